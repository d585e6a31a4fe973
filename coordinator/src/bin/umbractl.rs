//! umbractl: the coordinator CLI. All logic lives in `coordinator::ctl`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = coordinator::ctl::Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(coordinator::ctl::run(cli, &mut std::io::stdout()))
}
