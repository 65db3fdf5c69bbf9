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

/// `ot-hil vdk-server`: starts virtual DKs by fork for a runner (see
/// `ot_hil_vdk::fork_server`); not for use by hand.
#[derive(Debug, Args)]
pub struct ServerCmd {
    /// The runner: the server exits with it.
    #[arg(long, value_name = "PID")]
    parent: u32,
    /// Spare room on the command line, which each forked board overwrites with its own.
    #[arg(long, hide = true, value_name = "SPACES")]
    title_room: Option<String>,
}

impl ServerCmd {
    pub fn run(self) -> anyhow::Result<i32> {
        ot_hil_vdk::fork_server::serve(self.parent)?;
        Ok(0)
    }
}
