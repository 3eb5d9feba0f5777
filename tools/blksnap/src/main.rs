// SPDX-License-Identifier: GPL-2.0
//! `blksnap`: manage blksnap change tracking and snapshots.

mod ioctl;

use anyhow::{Context, Result};
use blksnap_uapi::BlksnapSectors;
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
    /// Print the change tracking state of a block device.
    Cbtinfo {
        /// The block device.
        #[arg(short, long)]
        device: PathBuf,
    },
    /// Save the change tracking table of a block device to a file.
    Readcbtmap {
        /// The block device.
        #[arg(short, long)]
        device: PathBuf,
        /// Where to write the table, one byte per tracking block.
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Mark sector ranges of a block device as changed.
    Markdirtyblock {
        /// The block device.
        #[arg(short, long)]
        device: PathBuf,
        /// A range as FIRST_SECTOR:SECTOR_COUNT (512-byte sectors).
        #[arg(short, long = "ranges", value_parser = parse_range, required = true, num_args = 1..)]
        ranges: Vec<BlksnapSectors>,
    },
}

/// Parse "SECTOR:COUNT".
fn parse_range(s: &str) -> Result<BlksnapSectors, String> {
    let (offset, count) = s.split_once(':').ok_or("expected SECTOR:COUNT")?;
    Ok(BlksnapSectors {
        offset: offset.parse().map_err(|e| format!("sector: {e}"))?,
        count: count.parse().map_err(|e| format!("count: {e}"))?,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        Command::Cbtinfo { device } => {
            let info = ioctl::cbtinfo(&open_device(&device)?)
                .map_err(|e| failed("cannot get the change tracking state of", &device, e))?;
            let generation = hex(&info.generation_id.b);
            if cli.json {
                println!(
                    "{{\"device_capacity\":{},\"block_size\":{},\"block_count\":{},\"generation_id\":\"{}\",\"changes_number\":{}}}",
                    info.device_capacity, info.block_size, info.block_count, generation, info.changes_number
                );
            } else {
                println!("device_capacity={}", info.device_capacity);
                println!("block_size={}", info.block_size);
                println!("block_count={}", info.block_count);
                println!("generation_id={generation}");
                println!("changes_number={}", info.changes_number);
            }
        }
        Command::Readcbtmap { device, file } => {
            let dev = open_device(&device)?;
            let info = ioctl::cbtinfo(&dev)
                .map_err(|e| failed("cannot get the change tracking state of", &device, e))?;
            let mut table = vec![0u8; info.block_count as usize];
            ioctl::cbtmap(&dev, 0, &mut table)
                .map_err(|e| failed("cannot read the change tracking table of", &device, e))?;
            std::fs::write(&file, &table).with_context(|| format!("cannot write {}", file.display()))?;
        }
        Command::Markdirtyblock { device, ranges } => {
            ioctl::cbtdirty(&open_device(&device)?, &ranges)
                .map_err(|e| failed("cannot mark changed blocks of", &device, e))?;
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
