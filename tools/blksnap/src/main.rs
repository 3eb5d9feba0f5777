// SPDX-License-Identifier: GPL-2.0
//! `blksnap`: manage blksnap change tracking and snapshots.

mod ioctl;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nix::errno::Errno;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(version, about = "Block device snapshots and change block tracking")]
struct Cli {
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version of the blksnap module.
    Version,
    /// Attach the blksnap filter to a block device, starting change tracking.
    Attach {
        /// The block device.
        #[arg(short, long)]
        device: PathBuf,
    },
    /// Detach the blksnap filter from a block device.
    Detach {
        /// The block device.
        #[arg(short, long)]
        device: PathBuf,
    },
}

const CONTROL_DEVICE: &str = "/dev/blksnap-control";

/// Describe an OS error in words and by errno name, e.g.
/// "Operation already in progress (EALREADY)".
fn describe(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => format!("{} ({:?})", Errno::from_raw(code).desc(), Errno::from_raw(code)),
        None => err.to_string(),
    }
}

/// Wrap an ioctl failure with what was being done.
fn failed(what: &str, path: &Path, err: io::Error) -> anyhow::Error {
    anyhow::anyhow!("{what} {}: {}", path.display(), describe(&err))
}

fn open_device(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|e| failed("cannot open", path, e))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Version => {
            let path = Path::new(CONTROL_DEVICE);
            let ctl = open_device(path).context("is the blksnap module loaded?")?;
            let v = ioctl::version(&ctl).map_err(|e| failed("cannot get the version from", path, e))?;
            if cli.json {
                println!(
                    "{{\"major\":{},\"minor\":{},\"revision\":{},\"build\":{}}}",
                    v.major, v.minor, v.revision, v.build
                );
            } else {
                println!("{}.{}.{}.{}", v.major, v.minor, v.revision, v.build);
            }
        }
        Command::Attach { device } => {
            ioctl::attach(&open_device(&device)?)
                .map_err(|e| failed("cannot attach the filter to", &device, e))?;
        }
        Command::Detach { device } => {
            ioctl::detach(&open_device(&device)?)
                .map_err(|e| failed("cannot detach the filter from", &device, e))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blksnap: {e:#}");
            ExitCode::FAILURE
        }
    }
}
