// SPDX-License-Identifier: GPL-2.0
//! The backup, verify and restore subcommands: full and incremental backups
//! of block devices to sparse image files, from one snapshot of them all.

use crate::args::parse_sectors;
use crate::copy::{self, Holes, NamedFile, NewFile};
use crate::meta::{self, Kind, Meta};
use crate::plan::{self, Plan, Previous};
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
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
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
    /// Back up block devices to sparse image files, in full or incrementally.
    ///
    /// Snapshots the devices together and copies each one's snapshot image,
    /// in full or only the blocks changed since its previous backup; the
    /// snapshot is destroyed at the end, also on an error or a signal.
    Backup(BackupArgs),
    /// Compare a backup image with a snapshot image, a device or a file.
    ///
    /// The exit status is 1 when they differ.
    Verify {
        /// The snapshot image, device or file.
        #[arg(long, value_name = "IMAGE")]
        image: PathBuf,
        /// The backup image, DIR/NAME.img.
        #[arg(long, value_name = "FILE")]
        backup: PathBuf,
    },
    /// Write a backup image to a block device.
    ///
    /// All of it is written, zeros included.
    Restore {
        /// The backup image, DIR/NAME.img.
        #[arg(long, value_name = "FILE")]
        backup: PathBuf,
        /// The block device (or regular file) to overwrite, at least as big
        /// as the image.
        #[arg(short, long)]
        device: PathBuf,
        /// Restore even onto a mounted or busy device, or from a backup whose
        /// last incremental update did not finish.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
pub struct BackupArgs {
    /// A block device to back up, attaching the filter if needed.
    #[arg(short, long = "device", value_name = "DEVICE", required = true, num_args = 1..)]
    devices: Vec<PathBuf>,
    /// The directory of the backups: NAME.img and NAME.meta.json for each
    /// device, NAME being the device file's name (loop0 for /dev/loop0).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// The difference storage: a regular file, a block device, or a
    /// directory to hold an unnamed temporary file.
    #[arg(short, long, value_name = "STORAGE")]
    storage: PathBuf,
    /// How big the difference storage may grow, in bytes, a multiple of 512;
    /// the suffixes K, M, G and T are powers of 1024.
    #[arg(short, long, value_name = "LIMIT", value_parser = parse_sectors)]
    limit: u64,
    /// Copy only the blocks changed since the previous backup in DIR into its
    /// image; refuse when change tracking cannot tell which (a new
    /// generation: the filter was attached again or tracking was reset).
    #[arg(long)]
    incremental: bool,
    /// Back up in full when an incremental backup cannot be done.
    #[arg(long, requires = "incremental")]
    full_if_needed: bool,
}

pub fn run(command: Command, json: bool) -> Result<()> {
    match command {
        Command::Backup(args) => backup(&args, json),
        Command::Verify { image, backup } => verify(&image, &backup, json),
        Command::Restore {
            backup,
            device,
            force,
        } => restore(&backup, &device, force, json),
    }
}

/// What backup reports for each device.
#[derive(Serialize)]
struct Backed {
    image: String,
    blocks_copied: u64,
    blocks_total: u64,
    #[serde(flatten)]
    meta: Meta,
}

impl Display for Backed {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        let m = &self.meta;
        let kind = match m.kind {
            Kind::Full => "full",
            Kind::Incremental => "incremental",
        };
        writeln!(
            f,
            "{}: {kind} backup to {}: {} bytes copied, {} of {} blocks (generation {}, snapshot {})",
            m.device,
            self.image,
            m.bytes_copied,
            self.blocks_copied,
            self.blocks_total,
            m.generation_id,
            m.changes_number
        )
    }
}

/// What verify reports.
#[derive(Serialize)]
struct Verified {
    image: String,
    backup: String,
    image_size: u64,
    backup_size: u64,
    identical: bool,
    first_difference: Option<u64>,
    bytes_differ: u64,
}

impl Display for Verified {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        write!(f, "{} and {}", self.image, self.backup)?;
        match self.first_difference {
            None => writeln!(f, " are identical: {} bytes", self.image_size),
            Some(first) => {
                let unit = if self.bytes_differ == 1 { "byte" } else { "bytes" };
                write!(f, " differ: {} {unit}, the first at byte {first}", self.bytes_differ)?;
                if self.image_size != self.backup_size {
                    write!(f, " (sizes {} and {})", self.image_size, self.backup_size)?;
                }
                writeln!(f)
            }
        }
    }
}

/// What restore reports.
#[derive(Serialize)]
struct Restored {
    backup: String,
    device: String,
    bytes_written: u64,
    device_size: u64,
}

impl Display for Restored {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        writeln!(
            f,
            "restored {} bytes from {} to {} ({} bytes)",
            self.bytes_written, self.backup, self.device, self.device_size
        )
    }
}

/// A progress bar on stderr if it is a terminal, cleared when dropped.
struct Progress(ProgressBar);

impl Progress {
    fn new(name: &str, total: u64) -> Self {
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
    let names = backup_names(&args.devices)?;
    std::fs::create_dir_all(&args.output).map_err(|e| failed("cannot create", args.output.display(), e))?;
    let stop = stop_on_signals()?;
    // From here on, an error or a signal drops the snapshot, destroying it.
    let snapshot = Snapshot::create(&args.storage, args.limit)?;
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
    back_up_taken(args, &names, time, &stop, json)?;
    snapshot.destroy()
}

/// Back up the devices of the snapshot just taken.
fn back_up_taken(args: &BackupArgs, names: &[&str], time: u64, stop: &AtomicBool, json: bool) -> Result<()> {
    // Plan every device before copying any, so that a refusal copies nothing.
    let mut sources = Vec::new();
    for (device, name) in args.devices.iter().zip(names) {
        sources.push(Source::open(args, device, name, stop)?);
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
    name: &'a str,
    dev: File,
    /// The snapshot image.
    image: NamedFile,
    tracking: Cbtinfo,
    plan: Plan,
    backup_path: PathBuf,
    meta_path: PathBuf,
}

impl<'a> Source<'a> {
    fn open(args: &BackupArgs, device: &'a Path, name: &'a str, stop: &AtomicBool) -> Result<Self> {
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
        let (backup_path, meta_path) = meta::paths(&args.output, name);
        let plan = if args.incremental {
            let previous = previous(&backup_path, &meta_path)?;
            plan::plan_incremental(previous, &tracking, args.full_if_needed).map_err(|reason| {
                anyhow!(
                    "cannot back up {} incrementally to {}: {reason}: run a full backup or pass --full-if-needed",
                    device.display(),
                    backup_path.display()
                )
            })?
        } else {
            Plan::Full { reason: None }
        };
        if let Plan::Full { reason: Some(reason) } = &plan {
            eprintln!("blksnap: backing up {} in full: {reason}", device.display());
        }
        Ok(Self {
            device,
            name,
            dev,
            image,
            tracking,
            plan,
            backup_path,
            meta_path,
        })
    }

    /// Copy the planned blocks of the image to the backup, then record it.
    fn back_up(&self, time: u64, stop: &AtomicBool) -> Result<Backed> {
        let t = &self.tracking;
        let (blocks, kind) = match &self.plan {
            Plan::Full { .. } => {
                let all = 0..u64::from(t.block_count);
                (vec![all], Kind::Full)
            }
            Plan::Incremental { base } => {
                let table = read_cbt_table(&self.dev, self.device, t.block_count)?;
                (
                    plan::changed_blocks(&table, base.changes_number),
                    Kind::Incremental,
                )
            }
        };
        let ranges = plan::byte_ranges(&blocks, t.block_size, t.device_capacity);
        let meta = Meta {
            device: self.device.display().to_string(),
            device_capacity: t.device_capacity,
            block_size: t.block_size,
            generation_id: t.generation_id.clone(),
            changes_number: t.changes_number,
            time,
            kind,
            bytes_copied: plan::total(&ranges),
            complete: true,
        };
        let progress = Progress::new(self.name, meta.bytes_copied);
        let mut tick = |n| {
            progress.0.inc(n);
            check(stop)
        };
        let copied = match &self.plan {
            // A new file replaces the old backup only once complete.
            Plan::Full { .. } => NewFile::create(&self.backup_path).and_then(|new| {
                new.set_len(t.device_capacity)?;
                copy::copy(&self.image, &new, &ranges, Holes::Keep, &mut tick)?;
                new.commit()
            }),
            // In place: until this completes, the image is neither backup.
            Plan::Incremental { base } => {
                let incomplete = Meta {
                    complete: false,
                    ..base.clone()
                };
                meta::save(&self.meta_path, &incomplete)?;
                let backup = NamedFile::open(&self.backup_path, OpenOptions::new().write(true))?;
                copy::copy(&self.image, &backup, &ranges, Holes::Punch, &mut tick)
                    .and_then(|()| backup.sync())
            }
        };
        copied.map_err(|e| self.explain(e))?;
        meta::save(&self.meta_path, &meta)?;
        Ok(Backed {
            image: self.backup_path.display().to_string(),
            blocks_copied: plan::total(&blocks),
            blocks_total: u64::from(t.block_count),
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

/// What is left of the previous backup at these paths.
fn previous(backup_path: &Path, meta_path: &Path) -> Result<Previous> {
    let meta = match meta::load(meta_path) {
        Ok(None) => return Ok(Previous::Missing),
        Err(e) => return Ok(Previous::Unusable(format!("{e:#}"))),
        Ok(Some(meta)) => meta,
    };
    let image_len = match std::fs::metadata(backup_path) {
        Ok(m) => Some(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(failed("cannot look at", backup_path.display(), e)),
    };
    Ok(Previous::Found { meta, image_len })
}

fn verify(image: &Path, backup: &Path, json: bool) -> Result<()> {
    let read = OpenOptions::new().read(true).clone();
    let (a, b) = (NamedFile::open(image, &read)?, NamedFile::open(backup, &read)?);
    let (image_size, backup_size) = (a.size()?, b.size()?);
    let common = image_size.min(backup_size);
    let progress = Progress::new("verify", common);
    let diff = copy::compare(&a, &b, common, &mut |n| {
        progress.0.inc(n);
        Ok(())
    })?;
    drop(progress);
    // The bytes past the end of the shorter one differ too.
    let extra = image_size.abs_diff(backup_size);
    let report = Verified {
        image: image.display().to_string(),
        backup: backup.display().to_string(),
        image_size,
        backup_size,
        identical: diff.bytes + extra == 0,
        first_difference: diff.first.or((extra > 0).then_some(common)),
        bytes_differ: diff.bytes + extra,
    };
    print(json, &report)?;
    if !report.identical {
        bail!("{} and {} differ", image.display(), backup.display());
    }
    Ok(())
}

fn restore(backup: &Path, device: &Path, force: bool, json: bool) -> Result<()> {
    let source = NamedFile::open(backup, OpenOptions::new().read(true))?;
    if !force {
        check_complete(backup)?;
    }
    let target = open_target(device, force)?;
    let (len, room) = (source.size()?, target.size()?);
    if room < len {
        bail!(
            "cannot restore {} to {}: the backup is {len} bytes, the device only {room}",
            backup.display(),
            device.display()
        );
    }
    let progress = Progress::new("restore", len);
    let all = 0..len;
    // The device holds other data where the image has holes: those ranges
    // are zeroed (discarded where the device can, so a thin or loop device
    // stays thin), or written with zeros.
    copy::copy(&source, &target, &[all], Holes::Punch, &mut |n| {
        progress.0.inc(n);
        Ok(())
    })?;
    target.sync()?;
    drop(progress);
    print(
        json,
        &Restored {
            backup: backup.display().to_string(),
            device: device.display().to_string(),
            bytes_written: len,
            device_size: room,
        },
    )
}

/// Refuse the backup image `backup` if its metadata says that an incremental
/// backup into it did not finish.
fn check_complete(backup: &Path) -> Result<()> {
    let Some(path) = meta::path_of_image(backup) else {
        return Ok(());
    };
    match meta::load(&path)? {
        Some(meta) if !meta.complete => bail!(
            "{} is incomplete: an incremental backup into it did not finish; back up again, or pass --force",
            backup.display()
        ),
        _ => Ok(()),
    }
}

/// Where the block device `id` ("major:minor") is mounted, according to
/// `mountinfo`, the text of /proc/self/mountinfo.
fn mount_point<'a>(mountinfo: &'a str, id: &str) -> Option<&'a str> {
    mountinfo.lines().find_map(|line| {
        // Mount id, parent id, major:minor, root, mount point, ...
        let mut fields = line.split(' ');
        (fields.nth(2)? == id).then(|| fields.nth(1)).flatten()
    })
}

/// Open `path` to restore onto: a block device that is not in use (unless
/// `force`), or a regular file.
fn open_target(path: &Path, force: bool) -> Result<NamedFile> {
    let stat = std::fs::metadata(path).map_err(|e| failed("cannot open", path.display(), e))?;
    let mut options = OpenOptions::new();
    options.write(true);
    if stat.file_type().is_block_device() {
        if !force {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| failed("cannot read", "/proc/self/mountinfo", e))?;
            let id = format!("{}:{}", major(stat.rdev()), minor(stat.rdev()));
            if let Some(at) = mount_point(&mountinfo, &id) {
                bail!(
                    "{} is mounted on {at}: unmount it, or pass --force",
                    path.display()
                );
            }
            // Exclusive: also fails if a partition of it is mounted or another
            // device (RAID, device mapper) holds it, and keeps it unmounted.
            options.custom_flags(libc::O_EXCL);
        }
    } else if !stat.is_file() {
        bail!("{} is neither a block device nor a regular file", path.display());
    }
    match options.open(path) {
        Ok(file) => Ok(NamedFile::new(file, path)),
        Err(e) if errno(&e) == Some(Errno::EBUSY) => Err(anyhow!(
            "cannot open {}: {}; pass --force to restore anyway",
            path.display(),
            describe(&e, Some("in use"))
        )),
        Err(e) => Err(failed("cannot open", path.display(), e)),
    }
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
            Command::Backup(args) => args,
            _ => panic!("{args:?}: not backup"),
        }
    }

    #[test]
    fn parse_backup() {
        let a = backup_args(&["backup", "-d", "/dev/a", "-o", "/b", "-s", "/diff", "-l", "256M"]);
        assert_eq!(a.devices, [PathBuf::from("/dev/a")]);
        assert_eq!(
            (a.output, a.storage, a.limit),
            ("/b".into(), "/diff".into(), 256 << 11)
        );
        assert!(!a.incremental && !a.full_if_needed);

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
        ]);
        assert_eq!(a.devices, ["/dev/a", "/dev/b", "/dev/c"].map(PathBuf::from));
        assert!(a.incremental && a.full_if_needed);

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
        let Command::Verify { image, backup } = parse(&[
            "verify",
            "--image",
            "/dev/blksnap-7-0",
            "--backup",
            "/b/loop0.img",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (image, backup),
            ("/dev/blksnap-7-0".into(), "/b/loop0.img".into())
        );
        assert!(parse(&["verify", "--image", "/x"]).is_err());
        assert!(parse(&["verify", "--backup", "/x"]).is_err());

        let Command::Restore {
            backup,
            device,
            force,
        } = parse(&["restore", "--backup", "/b/loop0.img", "-d", "/dev/loop1"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (backup, device, force),
            ("/b/loop0.img".into(), "/dev/loop1".into(), false)
        );
        let Command::Restore { force, .. } =
            parse(&["restore", "--backup", "/b/x.img", "--device", "/dev/x", "--force"]).unwrap()
        else {
            panic!()
        };
        assert!(force);
        assert!(parse(&["restore", "--backup", "/b/x.img"]).is_err());
        assert!(parse(&["restore", "-d", "/dev/x"]).is_err());
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
    fn mount_points() {
        let mountinfo = "\
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
95 22 7:0 / /mnt/a rw,relatime shared:50 - ext4 /dev/loop0 rw
96 22 7:10 /sub /mnt/b rw - ext4 /dev/loop10 rw
";
        assert_eq!(mount_point(mountinfo, "7:0"), Some("/mnt/a"));
        assert_eq!(mount_point(mountinfo, "7:10"), Some("/mnt/b"));
        assert_eq!(mount_point(mountinfo, "7:1"), None);
        assert_eq!(mount_point("", "7:0"), None);
        assert_eq!(mount_point("garbage\n1 2\n", "7:0"), None);
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

    fn write(path: &Path, data: &[u8]) {
        std::fs::write(path, data).unwrap();
    }

    #[test]
    fn verify_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b.img"));
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        write(&a, &data);
        write(&b, &data);
        verify(&a, &b, true).unwrap();
        let mut other = data.clone();
        other[70_000] ^= 1;
        write(&b, &other);
        let err = verify(&a, &b, true).unwrap_err();
        assert!(err.to_string().ends_with("differ"), "{err}");
        // Shorter: the missing bytes differ.
        write(&b, &data[..99_000]);
        assert!(verify(&a, &b, false).is_err());
        let report = Verified {
            image: "a".into(),
            backup: "b".into(),
            image_size: 10,
            backup_size: 8,
            identical: false,
            first_difference: Some(8),
            bytes_differ: 2,
        };
        assert_eq!(
            report.to_string(),
            "a and b differ: 2 bytes, the first at byte 8 (sizes 10 and 8)\n"
        );
    }

    #[test]
    fn restore_files() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("x.img");
        let target = dir.path().join("target");
        let mut data = vec![0u8; 3 << 20];
        data[1 << 20] = 7;
        write(&backup, &data);
        // Holes in the image overwrite the target's old data.
        write(&target, &vec![0xaa; 4 << 20]);
        restore(&backup, &target, false, true).unwrap();
        let got = std::fs::read(&target).unwrap();
        assert!(got[..data.len()] == data[..]);
        assert!(got[data.len()..].iter().all(|&b| b == 0xaa));
        verify(&backup, &target, false).unwrap_err();

        write(&target, &[0; 100]);
        let err = restore(&backup, &target, false, false).unwrap_err();
        assert!(err.to_string().contains("the device only 100"), "{err}");

        // An interrupted incremental backup left the image incomplete.
        write(&target, &vec![0; 4 << 20]);
        let meta = Meta {
            device: "/dev/x".into(),
            device_capacity: data.len() as u64,
            block_size: 65536,
            generation_id: "0".repeat(32),
            changes_number: 1,
            time: 0,
            kind: Kind::Full,
            bytes_copied: 0,
            complete: false,
        };
        meta::save(&dir.path().join("x.meta.json"), &meta).unwrap();
        let err = restore(&backup, &target, false, false).unwrap_err();
        assert!(err.to_string().contains("is incomplete"), "{err}");
        restore(&backup, &target, true, false).unwrap();

        let err = restore(&backup, dir.path(), true, false).unwrap_err();
        assert!(
            err.to_string()
                .contains("neither a block device nor a regular file"),
            "{err}"
        );
    }

    #[test]
    fn backup_report() {
        let backed = Backed {
            image: "/b/loop0.img".into(),
            blocks_copied: 3,
            blocks_total: 4096,
            meta: Meta {
                device: "/dev/loop0".into(),
                device_capacity: 1 << 28,
                block_size: 65536,
                generation_id: "ab".repeat(16),
                changes_number: 2,
                time: 5,
                kind: Kind::Incremental,
                bytes_copied: 3 << 16,
                complete: true,
            },
        };
        assert_eq!(
            backed.to_string(),
            format!(
                "/dev/loop0: incremental backup to /b/loop0.img: 196608 bytes copied, 3 of 4096 blocks \
                 (generation {}, snapshot 2)\n",
                "ab".repeat(16)
            )
        );
        let json = serde_json::to_value(&backed).unwrap();
        assert_eq!(json["kind"], "incremental");
        assert_eq!(json["bytes_copied"], 196608);
        assert_eq!(json["blocks_copied"], 3);
        assert_eq!(json["image"], "/b/loop0.img");
        assert_eq!(json["generation_id"], "ab".repeat(16));
    }
}
