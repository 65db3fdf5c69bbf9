//! `ot-hil`: thin command line over the `ot_hil` runner library. One file per subcommand under
//! `cmd/`. Owns argument parsing, the choice of board source and exit codes; the only package
//! that links the virtual DK (`ot-hil vdk` runs one). Holds no runner logic.

mod cmd;

use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("OT_HIL_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = cmd::Cli::parse();
    let code = match cli.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ot_hil::report::exit_code::INFRA_ERROR
        }
    };
    std::process::exit(code);
}
