//! The fuzz checks on stable Rust, without libFuzzer: every seed, then deterministic mutations
//! of the seeds (bit flips, truncations, insertions, splices), so `cargo test` in this crate is
//! a quick smoke run of the same oracles the fuzz targets use.

use std::path::{Path, PathBuf};

use ot_hil_dtls_fuzz::{
    SUITES, Target, check_datagram, check_ecjpake_edits, check_ecjpake_round_one,
    check_ecjpake_round_two, check_handshake_body, check_handshake_record, check_transcript,
};

/// xorshift64*: a fixed sequence, so a failure reproduces.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }

    fn mutate(&mut self, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..=self.below(3) {
            match self.below(4) {
                0 if !out.is_empty() => {
                    let i = self.below(out.len());
                    out[i] ^= 1 << self.below(8);
                }
                1 => {
                    let keep = self.below(out.len() + 1);
                    out.truncate(keep);
                }
                2 => {
                    let i = self.below(out.len() + 1);
                    out.insert(i, self.next() as u8);
                }
                _ => {
                    // Splice: our head, the other input's tail.
                    let i = self.below(out.len() + 1);
                    let j = self.below(other.len() + 1);
                    out.truncate(i);
                    out.extend_from_slice(&other[j..]);
                }
            }
        }
        out
    }
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    paths.sort();
    let inputs: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).expect("read seed"))
        .collect();
    assert!(!inputs.is_empty(), "no seeds in {}", dir.display());
    inputs
}

/// Run `check` on every seed and on `rounds` mutations.
fn replay(target: &str, rounds: usize, check: impl Fn(&[u8])) {
    let inputs = seeds(target);
    let mut m = Mutator(0x0715_4a1c_0ffe_e001);
    for input in &inputs {
        check(input);
    }
    for _ in 0..rounds {
        let a = &inputs[m.below(inputs.len())];
        let b = &inputs[m.below(inputs.len())];
        check(&m.mutate(a, b));
    }
}

#[test]
fn record_seeds_and_mutations() {
    replay("record", 3000, check_datagram);
}

#[test]
fn handshake_bodies_from_seed_records() {
    // The handshake target's input is `type, suite, body`; derive such inputs from the records.
    replay("record", 3000, |datagram| {
        for record in ot_hil_dtls::messages::split_records(datagram).0 {
            check_handshake_record(record.fragment);
            if let [msg_type, body @ ..] = record.fragment {
                for suite in SUITES {
                    check_handshake_body(ot_hil_dtls::HandshakeType(*msg_type), body, suite);
                }
            }
        }
    });
}

#[test]
fn transcript_seeds_and_mutations() {
    replay("transcript", 1000, check_transcript);
}

#[test]
fn ecjpake_seeds_and_mutations() {
    // EC arithmetic is slow in debug builds: fewer rounds.
    replay("ecjpake", 150, |input| {
        if let Some((mode, rest)) = input.split_first() {
            match mode % 2 {
                0 => check_ecjpake_round_one(rest),
                _ => check_ecjpake_round_two(rest),
            }
        }
    });
    let mut m = Mutator(7);
    for target in [
        Target::ClientRoundOne,
        Target::ServerRoundOne,
        Target::ServerRoundTwo,
        Target::ClientRoundTwo,
    ] {
        check_ecjpake_edits(target, &[]);
        for _ in 0..25 {
            let edits: Vec<u8> = (0..4 * (1 + m.below(2))).map(|_| m.next() as u8).collect();
            check_ecjpake_edits(target, &edits);
        }
    }
}
