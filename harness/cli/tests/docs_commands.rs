//! Docs are tests: every `ot-hil ...` command line of the README files and the CI workflows names a
//! subcommand and flags the binary has, and the ones that need only files of this repository
//! (`check`, `list`, `boards --sysfs-root fixtures/hw/...`) are run for real.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");

/// Files whose commands people and CI copy.
const DOCUMENTS: &[&str] = &[
    "README.md",
    "testcases/README.md",
    "ci/README.md",
    "ci/github/hil.yml",
    "ci/.gitlab-ci.yml",
    ".ci/run",
    "FUZZING.md",
    "firmware/README.md",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A command line found in a document.
#[derive(Debug, Clone)]
struct Documented {
    /// `file:line`, for the failure message.
    origin: String,
    /// Words after `ot-hil`, quotes removed.
    args: Vec<String>,
}

/// Splits a command line into words: quotes group, a `#` word starts a comment.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// Where a command starts on a line: in a Markdown code block line or inline code span, or after
/// `-p ot-hil --` (`cargo run [--quiet] -p ot-hil -- ...`) in a workflow or script. Prose
/// mentioning ot-hil is not a command.
fn command_start(line: &str, markdown: bool, in_code_block: bool) -> Option<String> {
    if !markdown {
        return line
            .split_once("-p ot-hil -- ")
            .map(|(_, rest)| rest.to_string());
    }
    if in_code_block {
        return line
            .trim_start()
            .strip_prefix("ot-hil ")
            .map(str::to_string);
    }
    let (_, rest) = line.split_once("`ot-hil ")?;
    rest.split_once('`').map(|(cmd, _)| cmd.to_string())
}

/// Every documented command line, with its continuation lines (`--flag ...` or `[--flag ...]`
/// lines below it, or a line ending in `\`).
fn documented_commands() -> Vec<Documented> {
    let mut out = Vec::new();
    for doc in DOCUMENTS {
        let path = repo().join(doc);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let markdown = doc.ends_with(".md");
        let lines: Vec<&str> = text.lines().collect();
        let mut in_code_block = false;
        for (i, line) in lines.iter().enumerate() {
            if markdown && line.trim_start().starts_with("```") {
                in_code_block = !in_code_block;
                continue;
            }
            // Inline spans can hold several commands: take each.
            let mut starts = Vec::new();
            if markdown && !in_code_block {
                let mut rest = *line;
                while let Some(at) = rest.find("`ot-hil ") {
                    let tail = &rest[at..];
                    if let Some(cmd) = command_start(tail, true, false) {
                        starts.push(cmd);
                    }
                    rest = &rest[at + 1..];
                }
            } else if let Some(cmd) = command_start(line, markdown, in_code_block) {
                starts.push(cmd);
            }
            for start in starts {
                let mut text = start;
                let mut next = i + 1;
                while next < lines.len() {
                    let cont = lines[next].trim_start();
                    let continues = text.trim_end().ends_with('\\')
                        || cont.starts_with("--")
                        || cont.starts_with("[--");
                    if !continues || cont.is_empty() || cont.starts_with("- ") {
                        break;
                    }
                    text = format!("{} {cont}", text.trim_end().trim_end_matches('\\'));
                    next += 1;
                }
                let args = words(&text.replace('\\', " "));
                // `ot-hil` followed by prose-like words in a code span is not a command either:
                // a command starts with a subcommand name.
                if args
                    .first()
                    .is_some_and(|w| w.chars().all(|c| c.is_ascii_lowercase()))
                {
                    out.push(Documented {
                        origin: format!("{doc}:{}", i + 1),
                        args,
                    });
                }
            }
        }
    }
    out
}

/// The flags a command line uses: `--name` and short `-x`, from `--name=V`, `[--name V]..` too.
fn flags(args: &[String]) -> Vec<String> {
    args.iter()
        .skip(1)
        .map(|a| a.trim_start_matches('['))
        .filter(|a| a.starts_with('-') && a.len() > 1 && !a.starts_with("-]"))
        .map(|a| {
            a.split(['=', ']'])
                .next()
                .unwrap_or(a)
                .trim_end_matches('.')
                .to_string()
        })
        .collect()
}

/// `--help` of each subcommand (path), asked once.
struct Helps(BTreeMap<Vec<String>, Option<String>>);

impl Helps {
    fn of(&mut self, path: &[String]) -> Option<&str> {
        self.0
            .entry(path.to_vec())
            .or_insert_with(|| {
                let out = Command::new(EXE).args(path).arg("--help").output().unwrap();
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            })
            .as_deref()
    }

    /// The subcommand path a command line names: `lab up` when `ot-hil lab up --help` is the
    /// help of that nested subcommand (its usage line says so), else just `run`, `check`, ...
    fn path_of(&mut self, args: &[String]) -> Vec<String> {
        let mut path = vec![args[0].clone()];
        if let Some(next) = args
            .get(1)
            .filter(|w| w.chars().all(|c| c.is_ascii_lowercase()))
        {
            let nested = vec![args[0].clone(), next.clone()];
            let usage = format!("Usage: ot-hil {} {next}", args[0]);
            if self.of(&nested).is_some_and(|h| h.contains(&usage)) {
                path = nested;
            }
        }
        path
    }
}

/// What is wrong with a documented command: a subcommand or flag the binary does not have.
fn problems(cmd: &Documented, helps: &mut Helps) -> Vec<String> {
    let path = helps.path_of(&cmd.args);
    let sub = path.join(" ");
    let Some(help) = helps.of(&path) else {
        return vec![format!("{}: no subcommand `ot-hil {sub}`", cmd.origin)];
    };
    let help = help.to_string();
    let listed = |flag: &str| {
        help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
            .any(|w| w == flag || w.split('=').next() == Some(flag))
    };
    flags(&cmd.args)
        .into_iter()
        .filter(|f| !listed(f))
        .map(|f| format!("{}: `ot-hil {sub}` has no flag {f}", cmd.origin))
        .collect()
}

#[test]
fn every_documented_subcommand_and_flag_exists() {
    let commands = documented_commands();
    // The documents hold many commands; finding few means the extraction broke.
    assert!(commands.len() >= 15, "{commands:#?}");
    for sub in ["run", "check", "list", "boards", "vdk", "sniff", "lab"] {
        assert!(
            commands.iter().any(|c| c.args[0] == sub),
            "no documented `ot-hil {sub}`: {commands:#?}"
        );
    }
    let mut helps = Helps(BTreeMap::new());
    let wrong: Vec<String> = commands
        .iter()
        .flat_map(|c| problems(c, &mut helps))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The checker itself: a removed subcommand or flag is caught.
#[test]
fn a_missing_subcommand_or_flag_is_caught() {
    let mut helps = Helps(BTreeMap::new());
    let doc = |line: &str| Documented {
        origin: "doc:1".into(),
        args: words(line),
    };
    assert!(problems(&doc("boards --check map.toml"), &mut helps).is_empty());
    assert_eq!(
        problems(&doc("board --check map.toml"), &mut helps),
        ["doc:1: no subcommand `ot-hil board`"]
    );
    assert_eq!(
        problems(
            &doc("run testcases [--filter PAT].. --no-such-flag=3"),
            &mut helps
        ),
        ["doc:1: `ot-hil run` has no flag --no-such-flag"]
    );
    // A flag of another subcommand is not one of this one.
    assert_eq!(
        problems(&doc("list --hardware-map m.toml"), &mut helps),
        ["doc:1: `ot-hil list` has no flag --hardware-map"]
    );
}

/// Placeholders (`[..]`, `<..>`, `$VAR`, `FILE`) mean a command is a template, not one to run.
fn runnable(args: &[String]) -> bool {
    let placeholder = |a: &str| {
        a.contains(['[', ']', '<', '>', '$', '|'])
            || a.contains("..")
            || (a.len() > 1 && a.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
    };
    !args.iter().any(|a| placeholder(a))
}

#[test]
fn fixture_backed_commands_run_for_real() {
    let mut ran = Vec::new();
    for cmd in documented_commands() {
        let sub = cmd.args[0].as_str();
        let wanted = match sub {
            "check" | "list" => true,
            "boards" => cmd.args.iter().any(|a| a == "--sysfs-root"),
            _ => false,
        };
        if !wanted || !runnable(&cmd.args) {
            continue;
        }
        let out = Command::new(EXE)
            .args(&cmd.args)
            .current_dir(repo())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: ot-hil {}\n{stdout}\n{stderr}",
            cmd.origin,
            cmd.args.join(" ")
        );
        if sub == "boards" {
            assert!(stdout.contains("KIND"), "{}: {stdout}", cmd.origin);
        }
        ran.push(format!("{sub} ({})", cmd.origin));
    }
    for sub in ["check", "list", "boards"] {
        assert!(
            ran.iter().any(|r| r.starts_with(sub)),
            "no runnable documented `ot-hil {sub}` (ran: {ran:?})"
        );
    }
}
