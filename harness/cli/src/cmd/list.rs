//! `ot-hil list`: the case runs `run` would do.

use clap::Args;
use ot_hil::case::VariantExpectation;
use ot_hil::report::exit_code;

use super::{CaseArgs, SelectArgs};

#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    cases: CaseArgs,
    /// Only these variants (repeatable; default: all).
    #[arg(long = "variant", value_name = "V")]
    variants: Vec<String>,
    #[command(flatten)]
    select: SelectArgs,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<i32> {
        let loaded = self.cases.load()?;
        for e in &loaded.errors {
            eprintln!("{e}");
        }
        let variants = ot_hil::variants::select(&loaded.variants, &self.variants)?;
        let selection = self.select.selection()?;
        let plan = ot_hil::runner::plan(&loaded.cases, &variants, Some(&selection), None);
        for p in &plan {
            let (Some(case), Some(v)) = (loaded.cases.get(p.case), variants.get(p.variant)) else {
                continue;
            };
            {
                let note = match case.expectation(&v.name) {
                    Some(VariantExpectation::Xfail { reason, .. }) => {
                        format!("  [xfail: {reason}]")
                    }
                    Some(VariantExpectation::Skip { reason }) => format!("  [skip: {reason}]"),
                    None => String::new(),
                };
                println!(
                    "{}@{}  ({} nodes, {} steps){note}",
                    case.name,
                    v.name,
                    case.nodes.len(),
                    case.steps.len()
                );
            }
        }
        let total = loaded.cases.len() * variants.len();
        if let Some(code) = self
            .select
            .report_count(plan.len(), total, &mut std::io::stderr())
            && loaded.errors.is_empty()
        {
            return Ok(code);
        }
        Ok(if loaded.errors.is_empty() {
            exit_code::SUCCESS
        } else {
            exit_code::INVALID_CASES
        })
    }
}
