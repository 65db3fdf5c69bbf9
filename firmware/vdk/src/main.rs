//! `ot-hil-vdk`: one virtual nRF52840 DK process (see `ot_hil_vdk::VdkArgs`).
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "ot-hil-vdk",
    about = "Virtual nRF52840 DK running the Thread CLI sample on a PTY"
)]
struct Cli {
    #[command(flatten)]
    vdk: ot_hil_vdk::VdkArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match ot_hil_vdk::run(cli.vdk) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ot-hil-vdk: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
