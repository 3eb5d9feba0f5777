// SPDX-License-Identifier: GPL-2.0
//! `blksnap`: manage blksnap change tracking and snapshots.

mod args;
mod backup;
mod copy;
mod extents;
mod ioctl;
mod meta;
mod plan;
mod points;
mod prune;
mod qcow2;
mod restore;
mod snapshot;
mod sums;

use anyhow::{anyhow, Context, Result};
use args::{dashed, hex, parse_range};
use blksnap_uapi::{BlksnapCbtinfo, BlksnapSectors};
use clap::{ArgGroup, CommandFactory, Parser, Subcommand};
use nix::errno::Errno;
use serde::Serialize;
use std::fmt::{self, Display, Formatter};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(version, about = "Block device snapshots and change block tracking")]
struct Cli {
    /// Print results as JSON (this project's own form; the default output
    /// is upstream's).
    #[arg(short, long, global = true)]
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
    /// Mark sector ranges of a block device, or the blocks of a file, as
    /// changed.
    #[command(group(ArgGroup::new("what").required(true).args(["ranges", "file"])))]
    Markdirtyblock {
        /// The block device; with --file, the one the file's file system is
        /// on by default.
        #[arg(short, long, required_unless_present = "file")]
        device: Option<PathBuf>,
        /// A range as FIRST_SECTOR:SECTOR_COUNT (512-byte sectors).
        #[arg(short, long = "ranges", value_parser = parse_range, num_args = 1..)]
        ranges: Vec<BlksnapSectors>,
        /// A regular file whose blocks to mark, on a file system on the
        /// block device itself (a partition for one on a partition).
        #[arg(short, long)]
        file: Option<PathBuf>,
    },
    #[command(flatten)]
    Snapshot(snapshot::Command),
    #[command(flatten)]
    Backup(backup::Command),
    /// Write the manual pages, blksnap.1 and one per subcommand, to DIR.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// What version reports.
#[derive(Serialize)]
struct Version {
    major: u16,
    minor: u16,
    revision: u16,
    build: u16,
}

impl Display for Version {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        writeln!(
            f,
            "{}.{}.{}.{}",
            self.major, self.minor, self.revision, self.build
        )
    }
}

/// What cbtinfo reports.
#[derive(Serialize)]
pub(crate) struct Cbtinfo {
    pub(crate) device_capacity: u64,
    pub(crate) block_size: u32,
    pub(crate) block_count: u32,
    /// 32 hexadecimal digits (as the backup metadata records it).
    pub(crate) generation_id: String,
    pub(crate) changes_number: u8,
}

impl From<&BlksnapCbtinfo> for Cbtinfo {
    fn from(info: &BlksnapCbtinfo) -> Self {
        Self {
            device_capacity: info.device_capacity,
            block_size: info.block_size,
            block_count: info.block_count,
            generation_id: hex(&info.generation_id.b),
            changes_number: info.changes_number,
        }
    }
}

impl Display for Cbtinfo {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        writeln!(f, "block_size={}", self.block_size)?;
        writeln!(f, "device_capacity={}", self.device_capacity)?;
        writeln!(f, "block_count={}", self.block_count)?;
        // Upstream shows it as a UUID.
        writeln!(f, "generation_id={}", dashed(&self.generation_id))?;
        writeln!(f, "changes_number={}", self.changes_number)
    }
}

/// What attach reports.
#[derive(Serialize)]
struct Attached {
    /// The filter was attached before.
    already: bool,
}

impl Display for Attached {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        if self.already {
            writeln!(f, "Already was attached")
        } else {
            writeln!(f, "Attached successfully")
        }
    }
}

/// What markdirtyblock --file reports: the device and the file's extents,
/// in file order.
#[derive(Serialize)]
struct FileExtents {
    device: String,
    ranges: Vec<Range>,
}

#[derive(Serialize)]
struct Range {
    offset: u64,
    count: u64,
}

impl Display for FileExtents {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        writeln!(f, "device path: '{}'", self.device)?;
        self.ranges
            .iter()
            .try_for_each(|r| writeln!(f, "allocate range: ofs={} cnt={}", r.offset, r.count))
    }
}

/// Print `report` as one line of JSON with --json, otherwise as its text,
/// which ends its lines itself.
fn print<T: Serialize + Display>(json: bool, report: &T) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

const CONTROL_DEVICE: &str = "/dev/blksnap-control";

/// The errno of an OS error.
fn errno(err: &io::Error) -> Option<Errno> {
    err.raw_os_error().map(Errno::from_raw)
}

/// Describe an OS error in words and by errno name, e.g.
/// "Operation already in progress (EALREADY)". `words`, when given, replace
/// the generic ones for an errno that means something particular to the call.
fn describe(err: &io::Error, words: Option<&str>) -> String {
    match errno(err) {
        Some(errno) => format!("{} ({errno:?})", words.unwrap_or(errno.desc())),
        None => err.to_string(),
    }
}

/// Wrap an ioctl failure with what was being done to what.
fn failed(what: &str, object: impl Display, err: io::Error) -> anyhow::Error {
    anyhow!("{what} {object}: {}", describe(&err, None))
}

fn open_device(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|e| failed("cannot open", path.display(), e))
}

/// The change tracking state of `dev`, open from `path`.
fn read_cbtinfo(dev: &File, path: &Path) -> Result<BlksnapCbtinfo> {
    ioctl::cbtinfo(dev).map_err(|e| failed("cannot get the change tracking state of", path.display(), e))
}

/// The change tracking table of `dev`, open from `path`, of `block_count`
/// blocks.
fn read_cbt_table(dev: &File, path: &Path, block_count: u32) -> Result<Vec<u8>> {
    let mut table = vec![0u8; block_count as usize];
    ioctl::cbtmap(dev, 0, &mut table)
        .map_err(|e| failed("cannot read the change tracking table of", path.display(), e))?;
    Ok(table)
}

/// How many sector ranges one CBTDIRTY request carries at most.
const DIRTY_BATCH: usize = 1024;

/// Mark `ranges` of `dev`, open from `path`, as changed, in requests of a
/// bounded size: a fragmented file can have very many extents.
fn mark_dirty(dev: &File, path: &Path, ranges: &[BlksnapSectors]) -> Result<()> {
    // An empty file still makes a request, which fails like any other
    // where the filter is not attached.
    if ranges.is_empty() {
        ioctl::cbtdirty(dev, &[])
    } else {
        ranges
            .chunks(DIRTY_BATCH)
            .try_for_each(|batch| ioctl::cbtdirty(dev, batch))
    }
    .map_err(|e| failed("cannot mark changed blocks of", path.display(), e))
}

fn open_control() -> Result<File> {
    // Read-write, as upstream opens it: the module may ask for write access
    // to change snapshots.
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(CONTROL_DEVICE)
        .map_err(|e| {
            anyhow!(
                "cannot open {CONTROL_DEVICE}: {}; is the blksnap module loaded?",
                describe(&e, None)
            )
        })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Version => {
            let v = ioctl::version(&open_control()?)
                .map_err(|e| failed("cannot get the version from", CONTROL_DEVICE, e))?;
            let report = Version {
                major: v.major,
                minor: v.minor,
                revision: v.revision,
                build: v.build,
            };
            print(cli.json, &report)?;
        }
        Command::Attach { device } => {
            let already = match ioctl::attach(&open_device(&device)?) {
                Ok(()) => false,
                Err(e) if errno(&e) == Some(Errno::EALREADY) => true,
                Err(e) => return Err(failed("cannot attach the filter to", device.display(), e)),
            };
            print(cli.json, &Attached { already })?;
        }
        Command::Detach { device } => {
            ioctl::detach(&open_device(&device)?)
                .map_err(|e| failed("cannot detach the filter from", device.display(), e))?;
        }
        Command::Cbtinfo { device } => {
            let info = read_cbtinfo(&open_device(&device)?, &device)?;
            print(cli.json, &Cbtinfo::from(&info))?;
        }
        Command::Readcbtmap { device, file } => {
            let dev = open_device(&device)?;
            let info = read_cbtinfo(&dev, &device)?;
            let table = read_cbt_table(&dev, &device, info.block_count)?;
            std::fs::write(&file, &table).with_context(|| format!("cannot write {}", file.display()))?;
        }
        Command::Markdirtyblock { device, ranges, file } => match file {
            Some(file) => {
                let (shown, device) = match device {
                    Some(device) => (device.display().to_string(), device),
                    None => extents::device_of(&file)?,
                };
                let dev = open_device(&device)?;
                let extents = extents::file_sectors(&dev, &device, &file)?;
                let report = FileExtents {
                    device: shown,
                    ranges: extents.iter().map(|r| Range { offset: r.offset, count: r.count }).collect(),
                };
                print(cli.json, &report)?;
                mark_dirty(&dev, &device, &extents::merge(extents))?;
            }
            None => {
                // clap requires the device without a file.
                let device = device.unwrap_or_default();
                mark_dirty(&open_device(&device)?, &device, &ranges)?;
            }
        },
        Command::Snapshot(command) => snapshot::run(command, cli.json)?,
        Command::Backup(command) => backup::run(command, cli.json)?,
        Command::Man { dir } => {
            std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir))
                .with_context(|| format!("cannot write the manual pages to {}", dir.display()))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout and succeed; usage errors exit 1,
        // as every other error does.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blksnap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blksnap_uapi::BlksnapUuid;
    use snapshot::Command as S;

    const ID: &str = "0123abcd-4567-89ef-fedc-ba9876543210";

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["blksnap"], args].concat())
    }

    fn snapshot(args: &[&str]) -> S {
        match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).command {
            Command::Snapshot(command) => command,
            _ => panic!("{args:?}: not a snapshot command"),
        }
    }

    fn id() -> BlksnapUuid {
        args::parse_uuid(ID).unwrap()
    }

    #[test]
    fn clap_definitions() {
        Cli::command().debug_assert();
    }

    #[test]
    fn snapshot_create() {
        let S::Create { file, limit, devices } = snapshot(&["snapshot_create", "-f", "/diff", "-l", "1G"])
        else {
            panic!()
        };
        assert_eq!((file, limit, devices), (PathBuf::from("/diff"), 1 << 21, vec![]));

        let S::Create { limit, devices, .. } = snapshot(&[
            "snapshot_create",
            "--file",
            "/diff",
            "--limit",
            "1024",
            "-d",
            "/dev/a",
            "--device",
            "/dev/b",
            "-d",
            "/dev/c",
            "/dev/d",
        ]) else {
            panic!()
        };
        assert_eq!(limit, 2);
        assert_eq!(
            devices,
            ["/dev/a", "/dev/b", "/dev/c", "/dev/d"].map(PathBuf::from)
        );

        for bad in [
            &["snapshot_create", "-l", "1G"][..],
            &["snapshot_create", "-f", "/diff"],
            &["snapshot_create", "-f", "/diff", "-l", "1000"],
            &["snapshot_create", "-f", "/diff", "-l", "99999999999T"],
            &["snapshot_create", "-f", "/diff", "-l", "1G", "-d"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn snapshot_add() {
        let S::Add { id: got, device } = snapshot(&["snapshot_add", "-i", ID, "-d", "/dev/a"]) else {
            panic!()
        };
        assert_eq!((got, device), (id(), PathBuf::from("/dev/a")));
        let S::Add { id: got, .. } =
            snapshot(&["snapshot_add", "--id", &ID.replace('-', ""), "--device", "/dev/a"])
        else {
            panic!()
        };
        assert_eq!(got, id());
        assert!(parse(&["snapshot_add", "-i", ID]).is_err());
        assert!(parse(&["snapshot_add", "-d", "/dev/a"]).is_err());
        assert!(parse(&["snapshot_add", "-i", "nope", "-d", "/dev/a"]).is_err());
    }

    #[test]
    fn snapshot_take_destroy_watcher() {
        let S::Take { id: got } = snapshot(&["snapshot_take", "-i", ID]) else {
            panic!()
        };
        assert_eq!(got, id());
        let S::Destroy { id: got } = snapshot(&["snapshot_destroy", "--id", ID]) else {
            panic!()
        };
        assert_eq!(got, id());
        let S::Watcher { id: got } = snapshot(&["snapshot_watcher", "-i", ID]) else {
            panic!()
        };
        assert_eq!(got, id());
        for command in ["snapshot_take", "snapshot_destroy", "snapshot_watcher"] {
            assert!(parse(&[command]).is_err(), "{command} without an id accepted");
            assert!(
                parse(&[command, "-i", &ID[1..]]).is_err(),
                "{command} with a short id accepted"
            );
        }
    }

    #[test]
    fn snapshot_collect() {
        let cli = parse(&["snapshot_collect", "--json"]).unwrap();
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Snapshot(S::Collect)));
        assert!(parse(&["--json", "snapshot_collect"]).unwrap().json);
        assert!(!parse(&["snapshot_collect"]).unwrap().json);
        assert!(parse(&["snapshot_collect", "-i", ID]).is_err());
    }

    #[test]
    fn snapshot_info() {
        let S::Info { device, field } = snapshot(&["snapshot_info", "-d", "/dev/a"]) else {
            panic!()
        };
        assert_eq!(device, PathBuf::from("/dev/a"));
        assert!(field.is_none());
        for (arg, want) in [("image", snapshot::InfoField::Image), ("error_code", snapshot::InfoField::ErrorCode)] {
            let S::Info { field, .. } = snapshot(&["snapshot_info", "-d", "/dev/a", "-f", arg]) else {
                panic!()
            };
            assert!(field == Some(want), "--field {arg}");
        }
        assert!(parse(&["snapshot_info"]).is_err());
        assert!(parse(&["snapshot_info", "-d", "/dev/a", "--field", "size"]).is_err());
    }

    #[test]
    fn snapshot_waitevent() {
        let S::Waitevent { id: got, timeout } = snapshot(&["snapshot_waitevent", "-i", ID, "-t", "500"])
        else {
            panic!()
        };
        assert_eq!((got, timeout), (id(), 500));
        assert!(parse(&["snapshot_waitevent", "-i", ID]).is_err());
        assert!(parse(&["snapshot_waitevent", "-i", ID, "-t", "-1"]).is_err());
        assert!(parse(&["snapshot_waitevent", "-i", ID, "-t", "4294967296"]).is_err());
    }

    #[test]
    fn markdirtyblock() {
        use clap::error::ErrorKind;
        let dirty = |args: &[&str]| match parse(&[&["markdirtyblock", "-d", "/dev/a"], args].concat()) {
            Ok(Cli {
                command: Command::Markdirtyblock { device, ranges, file },
                ..
            }) => {
                assert_eq!(device, Some(PathBuf::from("/dev/a")));
                Ok((ranges, file))
            }
            Ok(_) => panic!("{args:?}: not markdirtyblock"),
            Err(e) => Err(e.kind()),
        };
        let range = |offset, count| BlksnapSectors { offset, count };
        assert_eq!(
            dirty(&["-r", "0:8", "16:1"]),
            Ok((vec![range(0, 8), range(16, 1)], None))
        );
        assert_eq!(dirty(&["--ranges", "5:5"]), Ok((vec![range(5, 5)], None)));
        assert_eq!(dirty(&["-f", "/m/x"]), Ok((vec![], Some(PathBuf::from("/m/x")))));
        assert_eq!(dirty(&["--file", "/m/x"]), Ok((vec![], Some(PathBuf::from("/m/x")))));
        assert_eq!(dirty(&[]), Err(ErrorKind::MissingRequiredArgument));
        assert_eq!(dirty(&["-r", "0:8", "-f", "/m/x"]), Err(ErrorKind::ArgumentConflict));
        assert_eq!(dirty(&["-f", "/m/x", "-r", "0:8"]), Err(ErrorKind::ArgumentConflict));
        assert_eq!(dirty(&["-f", "/m/x", "-f", "/m/y"]), Err(ErrorKind::ArgumentConflict));
        assert!(dirty(&["-r"]).is_err());
        assert!(dirty(&["-f"]).is_err());
        // The file names its device; ranges need one.
        assert!(parse(&["markdirtyblock", "-f", "/m/x"]).is_ok());
        assert!(parse(&["markdirtyblock", "-r", "0:8"]).is_err());
    }

    #[test]
    fn man_is_hidden() {
        assert!(matches!(
            parse(&["man", "/tmp/x"]).unwrap().command,
            Command::Man { .. }
        ));
        let cmd = Cli::command();
        assert!(cmd.find_subcommand("man").unwrap().is_hide_set());
    }

    #[test]
    fn error_words() {
        let err = io::Error::from_raw_os_error(libc::EALREADY);
        assert_eq!(describe(&err, None), "Operation already in progress (EALREADY)");
        assert_eq!(describe(&err, Some("already")), "already (EALREADY)");
        assert_eq!(
            failed("cannot attach the filter to", "/dev/x", err).to_string(),
            "cannot attach the filter to /dev/x: Operation already in progress (EALREADY)"
        );
    }

    #[test]
    fn reports() {
        let v = Version {
            major: 2,
            minor: 0,
            revision: 0,
            build: 0,
        };
        assert_eq!(v.to_string(), "2.0.0.0\n");
        let info = Cbtinfo {
            device_capacity: 1 << 30,
            block_size: 65536,
            block_count: 16384,
            generation_id: "00112233445566778899aabbccddeeff".into(),
            changes_number: 3,
        };
        assert_eq!(
            info.to_string(),
            "block_size=65536\ndevice_capacity=1073741824\nblock_count=16384\n\
             generation_id=00112233-4455-6677-8899-aabbccddeeff\nchanges_number=3\n"
        );
        assert_eq!(Attached { already: false }.to_string(), "Attached successfully\n");
        assert_eq!(Attached { already: true }.to_string(), "Already was attached\n");
        let extents = FileExtents {
            device: "/dev/block/7:0".into(),
            ranges: vec![Range { offset: 8, count: 16 }],
        };
        assert_eq!(
            extents.to_string(),
            "device path: '/dev/block/7:0'\nallocate range: ofs=8 cnt=16\n"
        );
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"major":2,"minor":0,"revision":0,"build":0}"#
        );
    }
}
