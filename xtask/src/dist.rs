//! `cargo xtask dist`: what the packages ship besides binaries and
//! configs, generated from the binaries' own clap definitions so it cannot
//! drift from `--help`: man pages (gzipped, one per command and one per
//! umbractl/umbra-agent subcommand) and umbractl's shell completions.

use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

pub fn docs(out: &Path) -> Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut pages = 0;
    for cmd in [
        agent::cli::Cli::command(),
        coordinator::cli::Cli::command(),
        coordinator::ctl::Cli::command(),
    ] {
        pages += man_pages(&cmd, &man)?;
    }
    let mut ctl = coordinator::ctl::Cli::command();
    for (shell, file) in [
        (clap_complete::Shell::Bash, "umbractl"),
        (clap_complete::Shell::Zsh, "_umbractl"),
        (clap_complete::Shell::Fish, "umbractl.fish"),
    ] {
        let mut f = std::fs::File::create(completions.join(file))?;
        clap_complete::generate(shell, &mut ctl, "umbractl", &mut f);
    }
    println!(
        "wrote {pages} man pages to {} and completions to {}",
        man.display(),
        completions.display()
    );
    Ok(())
}

/// `name.1.gz` for `cmd` and `name-sub.1.gz` for each visible subcommand.
fn man_pages(cmd: &clap::Command, dir: &Path) -> Result<usize> {
    let cmd = cmd.clone().version(env!("CARGO_PKG_VERSION"));
    let name = cmd.get_name().to_owned();
    let mut n = 0;
    write_page(&cmd, &dir.join(format!("{name}.1.gz")))?;
    n += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page_name = format!("{name}-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(page_name.clone())
            .version(env!("CARGO_PKG_VERSION"));
        write_page(&sub, &dir.join(format!("{page_name}.1.gz")))?;
        n += 1;
    }
    Ok(n)
}

fn write_page(cmd: &clap::Command, path: &Path) -> Result<()> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .date("2026-11")
        .render(&mut roff)?;
    // mtime 0 and no file name: the same bytes on every build.
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(f, flate2::Compression::best());
    gz.write_all(&roff)?;
    gz.finish()?;
    Ok(())
}
