//! `ot-hil check`: validate case files.

use clap::Args;
use ot_hil::report::exit_code;

use super::CaseArgs;

#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    cases: CaseArgs,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<i32> {
        let loaded = self.cases.load()?;
        for e in &loaded.errors {
            eprintln!("{e}");
        }
        let steps: usize = loaded.cases.iter().map(|c| c.steps.len()).sum();
        println!(
            "{} of {} case files valid ({} steps; variants: {})",
            loaded.cases.len(),
            loaded.files,
            steps,
            loaded
                .variants
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(if loaded.errors.is_empty() {
            exit_code::SUCCESS
        } else {
            exit_code::INVALID_CASES
        })
    }
}
