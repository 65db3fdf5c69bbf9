//! `ot-hil vdk`: a virtual DK (the same program as `ot-hil-vdk`).

use clap::Args;

#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    args: ot_hil_vdk::VdkArgs,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<i32> {
        ot_hil_vdk::run(self.args)?;
        Ok(0)
    }
}
