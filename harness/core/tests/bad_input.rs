//! Bounded random-input runs of the fuzz checks on stable Rust (the cargo-fuzz targets in
//! `harness/core/fuzz` run the same functions under libFuzzer): console bytes and case files,
//! from the shipped cases and deterministic mutations of them. Nothing may panic or hang.

use std::path::Path;
use std::time::{Duration, Instant};

use ot_hil::fuzz_checks;

/// xorshift64*: deterministic, so a failure names its iteration.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

/// Pieces that steer mutations towards the parsers' interesting paths.
const TOKENS: &[&[u8]] = &[
    b"\x1b[",
    b"\x1b]",
    b"\x07",
    b"\x1b\\",
    b"\r",
    b"\n",
    b"\r\n",
    b"\x08",
    b"uart:~$ ",
    b"> ",
    b"\xff",
    b"\xc3",
    b"[[steps]]\n",
    b"[faults]\n",
    b"[[faults.board]]\n",
    b"include = \"f.toml\"\n",
    b"${",
    b"}",
    b"'",
    b"\"",
    b"= ",
    b"step = 0\n",
    b"loss = -1\n",
    b"from_step = 99\n",
    b"nodes = [\"a\"]\n",
    b"node = \"a\"\n",
    b"send = \"x\"\n",
    b"timeout = \"0s\"\n",
    b"(",
    b"[",
    b"\\",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            2 => v.truncate(at),
            _ => {
                let end = (at + rng.below(32)).min(v.len());
                v.drain(at..end);
            }
        }
    }
    v
}

fn shipped_cases() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testcases");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter_map(|p| std::fs::read(p).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.push(
        b"nodes = [\"a\"]\n[[steps]]\ninclude = \"f.toml\"\nwith = { node = \"a\" }\n".to_vec(),
    );
    out
}

#[test]
fn console_bytes_never_break_framing() {
    let mut rng = Rng(0x5eed_0001);
    let seeds: Vec<&[u8]> = vec![
        b"\x1b[1;32muart:~$ \x1b[mot state\r\r\nleader\r\r\nDone\r\n\x1b[1;32muart:~$ \x1b[m",
        b"> state\r\nleader\r\nDone\r\n> coaps connected\r\n",
        b"*** Booting Zephyr OS build v3.2.99-ncs1 ***\r\n\x1b]0;title\x07line\x08\x08x\n",
    ];
    let started = Instant::now();
    for i in 0..20_000 {
        let seed = seeds[i % seeds.len()];
        let mut input = vec![rng.next() as u8, rng.next() as u8, rng.next() as u8];
        if i % 10 == 0 {
            input.extend((0..rng.below(600)).map(|_| rng.next() as u8));
        } else {
            input.extend(mutate(&mut rng, seed));
        }
        fuzz_checks::console_lines(&input);
    }
    // One long line of garbage must be cut, not buffered.
    let mut long = vec![0, 63, 0];
    long.extend(std::iter::repeat_n(b'x', 1 << 20));
    fuzz_checks::console_lines(&long);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "too slow: a hang?"
    );
}

#[test]
fn case_files_never_panic_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.toml"), fuzz_checks::FRAGMENT).unwrap();
    let seeds = shipped_cases();
    assert!(seeds.len() > 3, "shipped cases not found");
    let mut rng = Rng(0x5eed_0002);
    let started = Instant::now();
    for seed in &seeds {
        fuzz_checks::case_file(dir.path(), seed);
    }
    for _ in 0..1_000 {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed);
        fuzz_checks::case_file(dir.path(), &input);
    }
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "too slow: a hang?"
    );
}
