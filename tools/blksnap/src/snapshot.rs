// SPDX-License-Identifier: GPL-2.0
//! The snapshot subcommands.

use crate::args::{parse_sectors, parse_uuid, uuid_string};
use crate::{describe, errno, failed, ioctl, open_control, open_device, print, CONTROL_DEVICE};
use anyhow::{anyhow, Result};
use blksnap_uapi::{
    BlksnapEventCorrupted, BlksnapEventNoSpace, BlksnapSnapshotEvent, BlksnapSnapshotinfo, BlksnapUuid,
    BLKSNAP_EVENT_CODE_CORRUPTED, BLKSNAP_EVENT_CODE_NO_SPACE,
};
use clap::{Subcommand, ValueEnum};
use nix::errno::Errno;
use serde::Serialize;
use std::ffi::CString;
use std::fmt::{self, Display, Formatter};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How long snapshot_watcher waits for an event before it checks that the
/// snapshot still exists.
const WATCH_TIMEOUT_MS: u32 = 1000;

#[derive(Subcommand)]
pub enum Command {
    /// Create a snapshot, add block devices to it and print its id.
    #[command(name = "snapshot_create")]
    Create {
        /// The difference storage: a regular file, a block device, or a
        /// directory to hold an unnamed temporary file.
        #[arg(short, long, value_name = "STORAGE")]
        file: PathBuf,
        /// How big the difference storage may grow, in bytes, a multiple of
        /// 512; the suffixes K, M, G and T are powers of 1024.
        #[arg(short, long, value_name = "LIMIT", value_parser = parse_sectors)]
        limit: u64,
        /// A block device to add to the snapshot, attaching the filter if needed.
        #[arg(short, long = "device", value_name = "DEVICE", num_args = 1..)]
        devices: Vec<PathBuf>,
    },
    /// Add a block device to a snapshot, attaching the filter if needed.
    #[command(name = "snapshot_add")]
    Add {
        /// The snapshot id.
        #[arg(short, long, value_parser = parse_uuid)]
        id: BlksnapUuid,
        /// The block device.
        #[arg(short, long)]
        device: PathBuf,
    },
    /// Take a snapshot: its block devices get their snapshot images.
    #[command(name = "snapshot_take")]
    Take {
        /// The snapshot id.
        #[arg(short, long, value_parser = parse_uuid)]
        id: BlksnapUuid,
    },
    /// Destroy a snapshot and its images.
    #[command(name = "snapshot_destroy")]
    Destroy {
        /// The snapshot id.
        #[arg(short, long, value_parser = parse_uuid)]
        id: BlksnapUuid,
    },
    /// Print the ids of all snapshots.
    #[command(name = "snapshot_collect")]
    Collect,
    /// Print the snapshot state of a block device: its error and image.
    #[command(name = "snapshot_info")]
    Info {
        /// The block device.
        #[arg(short, long)]
        device: PathBuf,
        /// Print only this field's value.
        #[arg(short, long, value_enum)]
        field: Option<InfoField>,
    },
    /// Wait for the next event of a snapshot and print it.
    #[command(name = "snapshot_waitevent")]
    Waitevent {
        /// The snapshot id.
        #[arg(short, long, value_parser = parse_uuid)]
        id: BlksnapUuid,
        /// How long to wait, in milliseconds.
        #[arg(short, long, value_name = "MS")]
        timeout: u32,
    },
    /// Print the events of a snapshot as they come, until it is destroyed.
    #[command(name = "snapshot_watcher")]
    Watcher {
        /// The snapshot id.
        #[arg(short, long, value_parser = parse_uuid)]
        id: BlksnapUuid,
    },
}

/// A field of snapshot_info.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum InfoField {
    Image,
    ErrorCode,
}

/// What snapshot_create reports.
#[derive(Serialize)]
struct Created {
    id: String,
}

impl Display for Created {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        writeln!(f, "{}", self.id)
    }
}

/// What snapshot_collect reports.
#[derive(Serialize)]
struct Collected {
    ids: Vec<String>,
}

impl Display for Collected {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        // Upstream's form: a space after each id, an empty line at the end.
        self.ids.iter().try_for_each(|id| writeln!(f, "{id} "))?;
        writeln!(f)
    }
}

/// What snapshot_info reports.
#[derive(Serialize)]
pub(crate) struct Info {
    pub(crate) error_code: i32,
    /// The image's path, or empty before the snapshot is taken.
    pub(crate) image: String,
    #[serde(skip)]
    field: Option<InfoField>,
}

impl From<&BlksnapSnapshotinfo> for Info {
    fn from(info: &BlksnapSnapshotinfo) -> Self {
        let len = info
            .image
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(info.image.len());
        let name = String::from_utf8_lossy(&info.image[..len]);
        Self {
            error_code: info.error_code,
            image: if name.is_empty() {
                String::new()
            } else {
                format!("/dev/{name}")
            },
            field: None,
        }
    }
}

impl Display for Info {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        // Upstream shows "/dev/" for no image.
        let image = if self.image.is_empty() { "/dev/" } else { &self.image };
        match self.field {
            Some(InfoField::Image) => writeln!(f, "{image}"),
            Some(InfoField::ErrorCode) => writeln!(f, "{}", self.error_code),
            None => {
                writeln!(f, "error_code={}", self.error_code)?;
                writeln!(f, "image={image}")
            }
        }
    }
}

/// A snapshot event, as snapshot_waitevent and snapshot_watcher report it.
#[derive(Serialize)]
struct Event {
    code: u32,
    time_label: i64,
    #[serde(flatten)]
    kind: EventKind,
}

#[derive(Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
enum EventKind {
    Corrupted {
        dev_id_mj: u32,
        dev_id_mn: u32,
        err_code: i32,
    },
    NoSpace {
        requested_nr_sect: u64,
    },
    Unknown,
}

impl From<&BlksnapSnapshotEvent> for Event {
    fn from(event: &BlksnapSnapshotEvent) -> Self {
        let kind = match event.code {
            BLKSNAP_EVENT_CODE_CORRUPTED => {
                let data: BlksnapEventCorrupted = ioctl::event_payload(event);
                EventKind::Corrupted {
                    dev_id_mj: data.dev_id_mj,
                    dev_id_mn: data.dev_id_mn,
                    err_code: data.err_code,
                }
            }
            BLKSNAP_EVENT_CODE_NO_SPACE => {
                let data: BlksnapEventNoSpace = ioctl::event_payload(event);
                EventKind::NoSpace {
                    requested_nr_sect: data.requested_nr_sect,
                }
            }
            _ => EventKind::Unknown,
        };
        Self {
            code: event.code,
            time_label: event.time_label,
            kind,
        }
    }
}

/// snapshot_waitevent's form of an event, upstream's.
impl Display for Event {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        writeln!(f, "result=ok")?;
        writeln!(f, "time={}", self.time_label)?;
        match self.kind {
            EventKind::Corrupted {
                dev_id_mj,
                dev_id_mn,
                err_code,
            } => {
                writeln!(f, "event=corrupted")?;
                writeln!(f, "dev_id_mj={dev_id_mj}")?;
                writeln!(f, "dev_id_mn={dev_id_mn}")?;
                writeln!(f, "err_code={err_code}")
            }
            EventKind::NoSpace { requested_nr_sect } => {
                writeln!(f, "event=no_space")?;
                writeln!(f, "requested_nr_sect={requested_nr_sect}")
            }
            EventKind::Unknown => writeln!(f, "event={}", self.code),
        }
    }
}

/// snapshot_watcher's line for an event, upstream's (its time is the
/// 32-bit truncation of the time label, its spelling upstream's).
struct WatchedEvent<'a>(&'a Event);

impl Display for WatchedEvent<'_> {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        let time = self.0.time_label as u32;
        match self.0.kind {
            EventKind::Corrupted {
                dev_id_mj,
                dev_id_mn,
                err_code,
            } => writeln!(
                f,
                "{time} - The snapshot was corrupted for device [{dev_id_mj}:{dev_id_mn}] with error \"{}\".",
                strerror(err_code)
            ),
            EventKind::NoSpace { requested_nr_sect } => writeln!(
                f,
                "{time} - The the difference storage already grow up to {} MiB. Limit has been reached.",
                requested_nr_sect / 2048
            ),
            EventKind::Unknown => writeln!(f, "{time} - unsupported event #{}.", self.0.code),
        }
    }
}

/// The C library's text for errno `code`, as strerror() gives it.
fn strerror(code: i32) -> String {
    let text = io::Error::from_raw_os_error(code).to_string();
    // The standard library appends " (os error N)" to strerror's text.
    match text.rfind(" (os error ") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

/// Wrap the failure of an ioctl naming snapshot `id`, where ESRCH means that
/// there is no such snapshot rather than no such process.
fn snapshot_failed(what: &str, id: &BlksnapUuid, err: io::Error) -> anyhow::Error {
    let words = (errno(&err) == Some(Errno::ESRCH)).then_some("no such snapshot");
    anyhow!("{what} {}: {}", uuid_string(id), describe(&err, words))
}

/// Wrap the failure of SNAPSHOT_DESTROY, which names an unknown snapshot
/// ENODEV.
fn destroy_failed(id: &BlksnapUuid, err: io::Error) -> anyhow::Error {
    let words = (errno(&err) == Some(Errno::ENODEV)).then_some("no such snapshot");
    anyhow!("cannot destroy snapshot {}: {}", uuid_string(id), describe(&err, words))
}

/// Add `device` to snapshot `id`, attaching the filter first if needed.
fn add_device(id: &BlksnapUuid, device: &Path) -> Result<()> {
    let dev = open_device(device)?;
    ioctl::ensure_attached(&dev).map_err(|e| failed("cannot attach the filter to", device.display(), e))?;
    ioctl::snapshot_add(&dev, id)
        .map_err(|e| snapshot_failed(&format!("cannot add {} to snapshot", device.display()), id, e))
}

/// A snapshot this process created, destroyed when dropped unless kept, so
/// that no error leaves it behind.
pub(crate) struct Snapshot {
    control: File,
    id: BlksnapUuid,
    owned: bool,
}

impl Snapshot {
    /// Create a snapshot whose difference storage is `storage`, allowed to
    /// grow to `limit` sectors.
    pub(crate) fn create(storage: &Path, limit: u64) -> Result<Self> {
        let control = open_control()?;
        let name = CString::new(storage.as_os_str().as_bytes())
            .map_err(|_| anyhow!("{}: a path cannot contain a NUL byte", storage.display()))?;
        let id = ioctl::snapshot_create(&control, &name, limit)
            .map_err(|e| failed("cannot create a snapshot on", storage.display(), e))?;
        Ok(Self {
            control,
            id,
            owned: true,
        })
    }

    pub(crate) fn add(&self, device: &Path) -> Result<()> {
        add_device(&self.id, device)
    }

    pub(crate) fn take(&self) -> Result<()> {
        ioctl::snapshot_take(&self.control, &self.id).map_err(|e| snapshot_failed("cannot take snapshot", &self.id, e))
    }

    /// Leave the snapshot for others to use and destroy; its id.
    pub(crate) fn keep(mut self) -> BlksnapUuid {
        self.owned = false;
        self.id
    }

    /// Destroy the snapshot.
    pub(crate) fn destroy(mut self) -> Result<()> {
        self.destroy_now()
    }

    fn destroy_now(&mut self) -> Result<()> {
        self.owned = false;
        ioctl::snapshot_destroy(&self.control, &self.id).map_err(|e| destroy_failed(&self.id, e))
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // Dropped on an error, which is what gets reported: a failure to
        // destroy can only be printed.
        if self.owned {
            if let Err(e) = self.destroy_now() {
                eprintln!("blksnap: {e}");
            }
        }
    }
}

pub fn run(command: Command, json: bool) -> Result<()> {
    match command {
        Command::Create { file, limit, devices } => {
            // A device that cannot be added drops, so destroys, the snapshot.
            let snapshot = Snapshot::create(&file, limit)?;
            let created = Created {
                id: uuid_string(&snapshot.id),
            };
            // Upstream prints the id before it adds the devices.
            if !json {
                print(json, &created)?;
            }
            devices.iter().try_for_each(|device| snapshot.add(device))?;
            snapshot.keep();
            if json {
                print(json, &created)?;
            }
        }
        Command::Add { id, device } => add_device(&id, &device)?,
        Command::Take { id } => {
            ioctl::snapshot_take(&open_control()?, &id)
                .map_err(|e| snapshot_failed("cannot take snapshot", &id, e))?;
        }
        Command::Destroy { id } => {
            ioctl::snapshot_destroy(&open_control()?, &id).map_err(|e| destroy_failed(&id, e))?;
        }
        Command::Collect => {
            let ids = collect(&open_control()?)?.iter().map(uuid_string).collect();
            print(json, &Collected { ids })?;
        }
        Command::Info { device, field } => {
            let info = ioctl::snapshotinfo(&open_device(&device)?)
                .map_err(|e| failed("cannot get the snapshot state of", device.display(), e))?;
            print(json, &Info { field, ..Info::from(&info) })?;
        }
        Command::Waitevent { id, timeout } => {
            let outcome = match ioctl::snapshot_wait_event(&open_control()?, &id, timeout) {
                Ok(event) => Waited::Event(Event::from(&*event)),
                Err(e) => match errno(&e) {
                    Some(Errno::ENOENT) => Waited::Timeout,
                    Some(Errno::EINTR) => Waited::Interrupted,
                    Some(Errno::ESRCH) => Waited::NotFound,
                    _ => return Err(snapshot_failed("cannot get an event of snapshot", &id, e)),
                },
            };
            print(json, &outcome)?;
        }
        Command::Watcher { id } => watch(&id, json)?,
    }
    Ok(())
}

/// The ids of all snapshots.
fn collect(control: &File) -> Result<Vec<BlksnapUuid>> {
    ioctl::snapshot_collect(control).map_err(|e| failed("cannot list the snapshots of", CONTROL_DEVICE, e))
}

/// What snapshot_waitevent reports: an event, or why there was none.
#[derive(Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
enum Waited {
    #[serde(rename = "ok")]
    Event(Event),
    Timeout,
    Interrupted,
    NotFound,
}

impl Display for Waited {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        match self {
            Self::Event(event) => event.fmt(f),
            Self::Timeout => writeln!(f, "result=timeout"),
            Self::Interrupted => writeln!(f, "result=interrupted"),
            Self::NotFound => writeln!(f, "result=not found"),
        }
    }
}

/// Print the events of snapshot `id` until it is corrupted or gone, in
/// upstream's words (one JSON object per event with --json).
fn watch(id: &BlksnapUuid, json: bool) -> Result<()> {
    let control = open_control()?;
    let say = |line: &str| if !json { println!("{line}") };
    say("Start snapshot watcher.");
    loop {
        match ioctl::snapshot_wait_event(&control, id, WATCH_TIMEOUT_MS) {
            Ok(raw) => {
                let event = Event::from(&*raw);
                if json {
                    print(json, &event)?;
                } else {
                    print!("{}", WatchedEvent(&event));
                }
                if matches!(event.kind, EventKind::Corrupted { .. }) {
                    break;
                }
            }
            Err(e) => match errno(&e) {
                Some(Errno::ENOENT | Errno::EINTR) => {}
                Some(Errno::ESRCH) => {
                    say("Snapshot not found");
                    break;
                }
                _ => return Err(snapshot_failed("cannot get an event of snapshot", id, e)),
            },
        }
    }
    say("Snapshot watcher finished");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blksnap_uapi::IMAGE_DISK_NAME_LEN;

    fn event(code: u32, payload: &[u8]) -> Box<BlksnapSnapshotEvent> {
        let mut event = Box::new(BlksnapSnapshotEvent {
            code,
            time_label: 1234,
            ..Default::default()
        });
        event.data[..payload.len()].copy_from_slice(payload);
        event
    }

    fn json(value: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(value).unwrap()
    }

    #[test]
    fn corrupted_event() {
        let payload: Vec<u8> = [7u32.to_ne_bytes(), 1u32.to_ne_bytes(), 28i32.to_ne_bytes()].concat();
        let e = Event::from(&*event(BLKSNAP_EVENT_CODE_CORRUPTED, &payload));
        assert_eq!(
            e.to_string(),
            "result=ok\ntime=1234\nevent=corrupted\ndev_id_mj=7\ndev_id_mn=1\nerr_code=28\n"
        );
        assert_eq!(
            WatchedEvent(&e).to_string(),
            "1234 - The snapshot was corrupted for device [7:1] with error \"No space left on device\".\n"
        );
        assert_eq!(
            json(&e),
            serde_json::json!({"code": 0, "name": "corrupted", "time_label": 1234,
                               "dev_id_mj": 7, "dev_id_mn": 1, "err_code": 28})
        );
    }

    #[test]
    fn no_space_event() {
        let e = Event::from(&*event(BLKSNAP_EVENT_CODE_NO_SPACE, &4096u64.to_ne_bytes()));
        assert_eq!(e.to_string(), "result=ok\ntime=1234\nevent=no_space\nrequested_nr_sect=4096\n");
        assert_eq!(
            WatchedEvent(&e).to_string(),
            "1234 - The the difference storage already grow up to 2 MiB. Limit has been reached.\n"
        );
        assert_eq!(
            json(&e),
            serde_json::json!({"code": 1, "name": "no_space", "time_label": 1234, "requested_nr_sect": 4096})
        );
    }

    #[test]
    fn unknown_event() {
        let e = Event::from(&*event(77, &[]));
        assert_eq!(e.to_string(), "result=ok\ntime=1234\nevent=77\n");
        assert_eq!(
            json(&e),
            serde_json::json!({"code": 77, "name": "unknown", "time_label": 1234})
        );
    }

    #[test]
    fn waited() {
        assert_eq!(Waited::Timeout.to_string(), "result=timeout\n");
        assert_eq!(Waited::Interrupted.to_string(), "result=interrupted\n");
        assert_eq!(Waited::NotFound.to_string(), "result=not found\n");
        assert_eq!(json(&Waited::NotFound), serde_json::json!({"result": "not_found"}));
        let e = Waited::Event(Event::from(&*event(77, &[])));
        assert_eq!(
            json(&e),
            serde_json::json!({"result": "ok", "code": 77, "name": "unknown", "time_label": 1234})
        );
    }

    #[test]
    fn strerror_texts() {
        assert_eq!(strerror(5), "Input/output error");
        assert_eq!(strerror(28), "No space left on device");
    }

    #[test]
    fn info() {
        let mut raw = BlksnapSnapshotinfo {
            error_code: -28,
            image: [0; IMAGE_DISK_NAME_LEN],
        };
        let info = Info::from(&raw);
        assert_eq!(info.to_string(), "error_code=-28\nimage=/dev/\n");
        let image_only = Info {
            field: Some(InfoField::Image),
            ..Info::from(&raw)
        };
        assert_eq!(image_only.to_string(), "/dev/\n");
        assert_eq!(json(&info), serde_json::json!({"error_code": -28, "image": ""}));

        raw.image[..14].copy_from_slice(b"blksnap-7-0\0xy");
        let info = Info::from(&raw);
        assert_eq!(info.to_string(), "error_code=-28\nimage=/dev/blksnap-7-0\n");
        let code_only = Info {
            field: Some(InfoField::ErrorCode),
            ..Info::from(&raw)
        };
        assert_eq!(code_only.to_string(), "-28\n");
        assert_eq!(
            json(&info),
            serde_json::json!({"error_code": -28, "image": "/dev/blksnap-7-0"})
        );

        // A name filling the whole field has no NUL.
        raw.image = [b'a'; IMAGE_DISK_NAME_LEN];
        assert_eq!(
            Info::from(&raw).image,
            format!("/dev/{}", "a".repeat(IMAGE_DISK_NAME_LEN))
        );
    }

    #[test]
    fn ids() {
        let c = Collected {
            ids: vec!["a".into(), "b".into()],
        };
        assert_eq!(c.to_string(), "a \nb \n\n");
        assert_eq!(json(&c), serde_json::json!({"ids": ["a", "b"]}));
        let none = Collected { ids: vec![] };
        assert_eq!(none.to_string(), "\n");
        assert_eq!(json(&none), serde_json::json!({"ids": []}));
        let created = Created { id: "a".into() };
        assert_eq!(created.to_string(), "a\n");
        assert_eq!(json(&created), serde_json::json!({"id": "a"}));
    }
}
