// SPDX-License-Identifier: GPL-2.0
//! The backup, verify and restore subcommands: full and incremental backups
//! of block devices to sparse image files, from one snapshot of them all.

use crate::args::parse_sectors;
use crate::copy::NamedFile;
use crate::meta::{Kind, Meta};
use crate::plan::{self, Fallback, Plan, Previous};
use crate::points::{self, Access, Delta, DirLock, Store};
use crate::prune::Policy;
use crate::restore;
use crate::snapshot::{Info, Snapshot};
use crate::{describe, errno, failed, ioctl, open_device, print, read_cbt_table, read_cbtinfo, Cbtinfo};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use nix::errno::Errno;
use nix::sys::stat::{major, minor};
use serde::Serialize;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::fmt::{self, Display, Formatter};
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long to wait for the device node of a snapshot image after the take.
const IMAGE_WAIT: Duration = Duration::from_secs(10);
const IMAGE_POLL: Duration = Duration::from_millis(100);

#[derive(Subcommand)]
pub enum Command {
    /// Back up block devices: each backup adds a restore point of each.
    ///
    /// Snapshots the devices together and copies each one's snapshot image,
    /// in full or only the blocks changed since its latest restore point,
    /// into a new restore point; earlier points are never modified. The
    /// snapshot is destroyed at the end, also on an error or a signal.
    /// `backup list` and `backup prune` manage the points.
    Backup(BackupCommand),
    /// Check a restore point against its checksums, or compare it with a
    /// snapshot image, a device or a file.
    ///
    /// The exit status is 1 when they differ.
    Verify {
        /// The snapshot image, device or file to compare the point with;
        /// without it, the point is checked against its checksums.
        #[arg(long, value_name = "IMAGE")]
        image: Option<PathBuf>,
        #[command(flatten)]
        point: PointArgs,
    },
    /// Write a restore point to a block device.
    ///
    /// All of it is written, zeros included.
    Restore {
        #[command(flatten)]
        point: PointArgs,
        /// The block device (or regular file) to overwrite, at least as big
        /// as the point.
        #[arg(short, long)]
        device: PathBuf,
        /// Restore even onto a mounted or busy device.
        #[arg(long)]
        force: bool,
    },
}

/// Which restore point.
#[derive(Args)]
pub struct PointArgs {
    /// The backups of a device, DIR/NAME (NAME being the device's file name),
    /// or one image file: a point's DIR/NAME.ID.qcow2, or a raw image.
    #[arg(long, value_name = "BACKUP")]
    pub backup: PathBuf,
    /// The restore point of DIR/NAME, as `backup list` numbers them; the
    /// latest by default.
    #[arg(long, value_name = "ID")]
    pub point: Option<u32>,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupCommand {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    args: BackupArgs,
}

#[derive(Subcommand)]
enum Action {
    /// List the restore points in a backup directory.
    List {
        /// The backup directory.
        #[arg(short, long, value_name = "DIR")]
        output: PathBuf,
        /// Only the points of this device (its file name, e.g. loop0).
        #[arg(short, long)]
        name: Option<String>,
    },
    /// Drop restore points, keeping those asked for; the newest is always
    /// kept, and points the kept ones are built on are merged into them.
    Prune(PruneArgs),
}

#[derive(Args)]
struct PruneArgs {
    /// The backup directory.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// Only the points of this device (its file name, e.g. loop0).
    #[arg(short, long)]
    name: Option<String>,
    /// Keep the newest N points.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_last: u32,
    /// Keep the newest point of each of the newest N days with points
    /// (UTC).
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_daily: u32,
    /// Keep the newest point of each of the newest N weeks with points.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_weekly: u32,
    /// Keep the newest point of each of the newest N months with points.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_monthly: u32,
    /// Only say which points would be dropped.
    #[arg(long)]
    dry_run: bool,
}

impl PruneArgs {
    fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
        }
    }
}

#[derive(Args)]
pub struct BackupArgs {
    /// A block device to back up, attaching the filter if needed.
    #[arg(short, long = "device", value_name = "DEVICE", required = true, num_args = 1..)]
    devices: Vec<PathBuf>,
    /// The backup directory: restore points NAME.ID.qcow2, .sums and .json
    /// of each device, NAME being the device file's name (loop0 for
    /// /dev/loop0).
    #[arg(short, long, value_name = "DIR", required = true)]
    output: Option<PathBuf>,
    /// The difference storage: a regular file, a block device, or a
    /// directory to hold an unnamed temporary file.
    #[arg(short, long, value_name = "STORAGE", required = true)]
    storage: Option<PathBuf>,
    /// How big the difference storage may grow, in bytes, a multiple of 512;
    /// the suffixes K, M, G and T are powers of 1024.
    #[arg(short, long, value_name = "LIMIT", value_parser = parse_sectors, required = true)]
    limit: Option<u64>,
    /// Store only the blocks changed since the latest restore point; refuse
    /// when change tracking cannot tell which (a new generation: the filter
    /// was attached again or tracking was reset), unless told what to do
    /// instead.
    #[arg(long)]
    incremental: bool,
    /// When change tracking cannot tell, read the whole device and store the
    /// blocks whose checksum differs from the latest point's.
    #[arg(long, requires = "incremental")]
    checksum_if_needed: bool,
    /// Back up in full when an incremental backup cannot be done.
    #[arg(long, requires = "incremental")]
    full_if_needed: bool,
}

pub fn run(command: Command, json: bool) -> Result<()> {
    match command {
        Command::Backup(BackupCommand { action: None, args }) => backup(&args, json),
        Command::Backup(BackupCommand {
            action: Some(Action::List { output, name }),
            ..
        }) => restore::list(&output, name.as_deref(), json),
        Command::Backup(BackupCommand {
            action: Some(Action::Prune(a)),
            ..
        }) => restore::prune(&a.output, a.name.as_deref(), a.policy(), a.dry_run, json),
        Command::Verify { image, point } => restore::verify(image.as_deref(), &point, json),
        Command::Restore { point, device, force } => restore::restore(&point, &device, force, json),
    }
}

/// What backup reports for each device.
#[derive(Serialize)]
struct Backed {
    /// The point's image, in full.
    path: String,
    #[serde(flatten)]
    meta: Meta,
}

impl Display for Backed {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        let m = &self.meta;
        writeln!(
            f,
            "{}: {} backup to {}: restore point {}, {} bytes read, {} bytes stored (generation {}, snapshot {})",
            m.device,
            m.kind.name(),
            self.path,
            m.id,
            m.bytes_read,
            m.bytes_stored,
            m.generation_id,
            m.changes_number
        )
    }
}

/// A progress bar on stderr if it is a terminal, cleared when dropped.
pub struct Progress(pub ProgressBar);

impl Progress {
    pub fn new(name: &str, total: u64) -> Self {
        if !io::stderr().is_terminal() {
            return Self(ProgressBar::hidden());
        }
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                .expect("a valid template")
                .progress_chars("=> ");
        Self(
            ProgressBar::new(total)
                .with_style(style)
                .with_prefix(name.to_owned()),
        )
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A flag that SIGINT, SIGTERM and SIGHUP set instead of ending the process,
/// which would leave the snapshot behind.
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("cannot handle signals")?;
    }
    Ok(stop)
}

/// Fail once a signal asked to stop.
fn check(stop: &AtomicBool) -> Result<()> {
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// The name of each device's backup, its file name, which must differ.
fn backup_names(devices: &[PathBuf]) -> Result<Vec<&str>> {
    let mut names = Vec::new();
    for device in devices {
        let name = device
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{}: no file name to name its backup by", device.display()))?;
        if names.contains(&name) {
            bail!("two devices are named {name}: their backups would be the same files");
        }
        names.push(name);
    }
    Ok(names)
}

/// Why the snapshot of `device` failed, from its error code (-errno).
fn snapshot_error(device: &Path, code: i32) -> String {
    let err = io::Error::from_raw_os_error(code.wrapping_neg());
    let words = (errno(&err) == Some(Errno::ENOSPC))
        .then_some("the difference storage is full; a larger --limit may help");
    format!(
        "the snapshot of {} failed: {}",
        device.display(),
        describe(&err, words)
    )
}

fn backup(args: &BackupArgs, json: bool) -> Result<()> {
    let (Some(output), Some(storage), Some(limit)) = (&args.output, &args.storage, args.limit) else {
        bail!("backup needs --output, --storage and --limit");
    };
    let names = backup_names(&args.devices)?;
    std::fs::create_dir_all(output).map_err(|e| failed("cannot create", output.display(), e))?;
    let _lock = DirLock::take(output, Access::Add)?;
    let stop = stop_on_signals()?;
    // From here on, an error or a signal drops the snapshot, destroying it.
    let snapshot = Snapshot::create(storage, limit)?;
    for device in &args.devices {
        snapshot.add(device)?;
        check(&stop)?;
    }
    snapshot.take()?;
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The images are closed when this returns, before the destroy, which
    // may refuse a busy image.
    back_up_taken(args, output, &names, time, &stop, json)?;
    snapshot.destroy()
}

/// Back up the devices of the snapshot just taken.
fn back_up_taken(
    args: &BackupArgs,
    output: &Path,
    names: &[&str],
    time: u64,
    stop: &AtomicBool,
    json: bool,
) -> Result<()> {
    // Plan every device before copying any, so that a refusal copies nothing.
    let mut sources = Vec::new();
    for (device, name) in args.devices.iter().zip(names) {
        sources.push(Source::open(args, output, device, name, stop)?);
    }
    for source in &sources {
        check(stop)?;
        print(json, &source.back_up(time, stop)?)?;
    }
    Ok(())
}

/// A device of the taken snapshot and how to back it up.
struct Source<'a> {
    device: &'a Path,
    dev: File,
    /// The snapshot image.
    image: NamedFile,
    tracking: Cbtinfo,
    plan: Plan,
    store: Store,
}

impl<'a> Source<'a> {
    fn open(
        args: &BackupArgs,
        output: &Path,
        device: &'a Path,
        name: &str,
        stop: &AtomicBool,
    ) -> Result<Self> {
        let dev = open_device(device)?;
        let image = NamedFile::open(
            &wait_for_image(&dev, device, stop)?,
            OpenOptions::new().read(true),
        )?;
        // Read after the take: changes_number is this snapshot's number.
        let tracking = Cbtinfo::from(&read_cbtinfo(&dev, device)?);
        plan::check_geometry(&tracking).map_err(|e| anyhow!("cannot back up {}: {e}", device.display()))?;
        let size = image.size()?;
        if size != tracking.device_capacity {
            bail!(
                "cannot back up {}: its image {} is {size} bytes, but change tracking covers {}",
                device.display(),
                image.path().display(),
                tracking.device_capacity
            );
        }
        let store = Store::new(output, name);
        for file in store.clean()? {
            eprintln!("blksnap: removed {file}, left by an interrupted backup or prune");
        }
        let plan = if args.incremental {
            let fallback = Fallback {
                checksum: args.checksum_if_needed,
                full: args.full_if_needed,
            };
            plan::plan_incremental(previous(&store), &tracking, fallback).map_err(|reason| {
                anyhow!(
                    "cannot back up {} incrementally to {}: {reason}: run a full backup, or pass \
                     --checksum-if-needed or --full-if-needed",
                    device.display(),
                    output.display()
                )
            })?
        } else {
            Plan::Full { reason: None }
        };
        match &plan {
            Plan::Full { reason: Some(reason) } => {
                eprintln!("blksnap: backing up {} in full: {reason}", device.display())
            }
            Plan::Checksum { reason, .. } => eprintln!(
                "blksnap: backing up {} by checksums, reading all of it: {reason}",
                device.display()
            ),
            _ => {}
        }
        Ok(Self {
            device,
            dev,
            image,
            tracking,
            plan,
            store,
        })
    }

    /// Write a new restore point of the image, then record it.
    fn back_up(&self, time: u64, stop: &AtomicBool) -> Result<Backed> {
        let t = &self.tracking;
        let sum_block = points::sum_block(t.block_size);
        let (delta, kind, total) = match &self.plan {
            Plan::Full { .. } => (Delta::Full, Kind::Full, t.device_capacity),
            Plan::Incremental { base } => {
                let table = read_cbt_table(&self.dev, self.device, t.block_count)?;
                let changed = plan::changed_blocks(&table, base.changes_number);
                let runs = plan::coarsen(&changed, t.block_size, sum_block);
                let total = runs.iter().map(|r| r.end - r.start).sum::<u64>() * sum_block;
                let base_sums = self.store.sums(base)?;
                (
                    Delta::Blocks {
                        base,
                        base_sums,
                        runs,
                    },
                    Kind::Incremental,
                    total.min(t.device_capacity),
                )
            }
            Plan::Checksum { base, .. } => {
                let base_sums = self.store.sums(base)?;
                (
                    Delta::Checksum { base, base_sums },
                    Kind::Checksum,
                    t.device_capacity,
                )
            }
        };
        let id = self.store.next_id()?;
        let progress = Progress::new(self.store.name(), total);
        let mut tick = |n| {
            progress.0.inc(n);
            check(stop)
        };
        let written = self
            .store
            .write_point(id, &self.image, t.device_capacity, sum_block, delta, &mut tick)
            .map_err(|e| self.explain(e))?;
        let rdev = std::fs::metadata(self.device)
            .map_err(|e| failed("cannot look at", self.device.display(), e))?
            .rdev();
        let meta = Meta {
            id,
            device: self.device.display().to_string(),
            device_number: format!("{}:{}", major(rdev), minor(rdev)),
            device_capacity: t.device_capacity,
            block_size: t.block_size,
            generation_id: t.generation_id.clone(),
            changes_number: t.changes_number,
            time,
            kind,
            bytes_read: written.read,
            bytes_stored: written.stored,
            image: self.store.image_name(id),
            sums: self.store.sums_name(id),
        };
        self.store.commit(&meta)?;
        Ok(Backed {
            path: self.store.path(&meta.image).display().to_string(),
            meta,
        })
    }

    /// `err` with the snapshot's own error, if it failed: an overflow fails
    /// the reads of the image with a mere EIO.
    fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        match ioctl::snapshotinfo(&self.dev) {
            Ok(info) if info.error_code != 0 => err.context(snapshot_error(self.device, info.error_code)),
            _ => err,
        }
    }
}

/// The snapshot image of `dev`, open from `device`, once its node exists.
fn wait_for_image(dev: &File, device: &Path, stop: &AtomicBool) -> Result<PathBuf> {
    let deadline = Instant::now() + IMAGE_WAIT;
    loop {
        let info = ioctl::snapshotinfo(dev)
            .map_err(|e| failed("cannot get the snapshot state of", device.display(), e))?;
        let info = Info::from(&info);
        if info.error_code != 0 {
            bail!(snapshot_error(device, info.error_code));
        }
        if !info.image.is_empty() && Path::new(&info.image).exists() {
            return Ok(info.image.into());
        }
        if Instant::now() >= deadline {
            bail!(
                "the snapshot image of {} did not appear within {} s",
                device.display(),
                IMAGE_WAIT.as_secs()
            );
        }
        check(stop)?;
        thread::sleep(IMAGE_POLL);
    }
}

/// The latest restore point in `store`, and whether a backup can build on it.
fn previous(store: &Store) -> Previous {
    let points = match store.points() {
        Ok(points) => points,
        Err(e) => return Previous::Unusable(format!("{e:#}")),
    };
    let Some(meta) = points.last().cloned() else {
        return Previous::Missing;
    };
    let problem = store
        .chain(&meta)
        .and_then(|_| store.sums(&meta))
        .err()
        .map(|e| format!("restore point {} cannot be built on: {e:#}", meta.id));
    Previous::Found { meta, problem }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command as Top};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        match Cli::try_parse_from([&["blksnap"], args].concat())?.command {
            Top::Backup(command) => Ok(command),
            _ => panic!("{args:?}: not a backup command"),
        }
    }

    fn backup_args(args: &[&str]) -> BackupArgs {
        match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")) {
            Command::Backup(BackupCommand { action: None, args }) => args,
            _ => panic!("{args:?}: not backup"),
        }
    }

    #[test]
    fn parse_backup() {
        let a = backup_args(&["backup", "-d", "/dev/a", "-o", "/b", "-s", "/diff", "-l", "256M"]);
        assert_eq!(a.devices, [PathBuf::from("/dev/a")]);
        assert_eq!(
            (a.output, a.storage, a.limit),
            (Some("/b".into()), Some("/diff".into()), Some(256 << 11))
        );
        assert!(!a.incremental && !a.full_if_needed && !a.checksum_if_needed);

        let a = backup_args(&[
            "backup",
            "--device",
            "/dev/a",
            "-d",
            "/dev/b",
            "/dev/c",
            "--output",
            "/b",
            "--storage",
            "/tmp",
            "--limit",
            "1G",
            "--incremental",
            "--full-if-needed",
            "--checksum-if-needed",
        ]);
        assert_eq!(a.devices, ["/dev/a", "/dev/b", "/dev/c"].map(PathBuf::from));
        assert!(a.incremental && a.full_if_needed && a.checksum_if_needed);

        for bad in [
            &["backup", "-o", "/b", "-s", "/diff", "-l", "1G"][..],
            &["backup", "-d", "/dev/a", "-s", "/diff", "-l", "1G"],
            &["backup", "-d", "/dev/a", "-o", "/b", "-l", "1G"],
            &["backup", "-d", "/dev/a", "-o", "/b", "-s", "/diff"],
            &["backup", "-d", "/dev/a", "-o", "/b", "-s", "/diff", "-l", "1000"],
            // Falling back from an incremental backup needs one asked for.
            &[
                "backup",
                "-d",
                "/dev/a",
                "-o",
                "/b",
                "-s",
                "/d",
                "-l",
                "1G",
                "--checksum-if-needed",
            ],
            &[
                "backup",
                "-d",
                "/dev/a",
                "-o",
                "/b",
                "-s",
                "/diff",
                "-l",
                "1G",
                "--full-if-needed",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        let cli = Cli::try_parse_from([
            "blksnap", "backup", "-d", "/dev/a", "-o", "/b", "-s", "/d", "-l", "1G", "--json",
        ]);
        assert!(cli.unwrap().json);
    }

    #[test]
    fn parse_verify_restore() {
        let Command::Verify { image, point } =
            parse(&["verify", "--image", "/dev/blksnap-7-0", "--backup", "/b/loop0"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (image, point.backup, point.point),
            (Some("/dev/blksnap-7-0".into()), "/b/loop0".into(), None)
        );
        let Command::Verify { image, point } =
            parse(&["verify", "--backup", "/b/loop0", "--point", "3"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((image, point.point), (None, Some(3)));
        assert!(parse(&["verify", "--image", "/x"]).is_err());
        assert!(parse(&["verify", "--backup", "/x", "--point", "x"]).is_err());

        let Command::Restore { point, device, force } =
            parse(&["restore", "--backup", "/b/loop0", "-d", "/dev/loop1"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (point.backup, point.point, device, force),
            ("/b/loop0".into(), None, "/dev/loop1".into(), false)
        );
        let Command::Restore { force, point, .. } = parse(&[
            "restore", "--backup", "/b/x", "--point", "2", "--device", "/dev/x", "--force",
        ])
        .unwrap() else {
            panic!()
        };
        assert!(force);
        assert_eq!(point.point, Some(2));
        assert!(parse(&["restore", "--backup", "/b/x.img"]).is_err());
        assert!(parse(&["restore", "-d", "/dev/x"]).is_err());
    }

    #[test]
    fn parse_list_prune() {
        let Command::Backup(BackupCommand {
            action: Some(Action::List { output, name }),
            ..
        }) = parse(&["backup", "list", "-o", "/b"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((output, name), ("/b".into(), None));
        let Command::Backup(BackupCommand {
            action: Some(Action::Prune(a)),
            ..
        }) = parse(&[
            "backup",
            "prune",
            "--output",
            "/b",
            "--name",
            "loop0",
            "--keep-last",
            "3",
            "--keep-daily",
            "7",
            "--dry-run",
        ])
        .unwrap()
        else {
            panic!()
        };
        let p = a.policy();
        assert_eq!(
            (a.output, a.name, p.last, p.daily, p.weekly, p.monthly, a.dry_run),
            ("/b".into(), Some("loop0".into()), 3, 7, 0, 0, true)
        );
        assert!(parse(&["backup", "list"]).is_err());
        // A subcommand and backup's own options do not mix.
        assert!(parse(&["backup", "-d", "/dev/a", "list", "-o", "/b"]).is_err());
    }

    #[test]
    fn names() {
        let devices = ["/dev/loop0", "/dev/mapper/vg-root", "sdb1"].map(PathBuf::from);
        assert_eq!(backup_names(&devices).unwrap(), ["loop0", "vg-root", "sdb1"]);
        let twice = ["/dev/loop0", "/other/loop0"].map(PathBuf::from);
        assert!(backup_names(&twice)
            .unwrap_err()
            .to_string()
            .contains("two devices are named loop0"));
        assert!(backup_names(&[PathBuf::from("/")]).is_err());
    }

    #[test]
    fn snapshot_errors() {
        assert_eq!(
            snapshot_error(Path::new("/dev/loop0"), -libc::ENOSPC),
            "the snapshot of /dev/loop0 failed: the difference storage is full; a larger --limit may help (ENOSPC)"
        );
        assert_eq!(
            snapshot_error(Path::new("/dev/loop0"), -libc::EIO),
            "the snapshot of /dev/loop0 failed: I/O error (EIO)"
        );
    }

    #[test]
    fn interrupted() {
        let stop = AtomicBool::new(false);
        assert!(check(&stop).is_ok());
        stop.store(true, Ordering::Relaxed);
        assert_eq!(check(&stop).unwrap_err().to_string(), "interrupted");
    }
}
