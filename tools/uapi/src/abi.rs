// SPDX-License-Identifier: GPL-2.0
//! Layouts and numbers of the blkfilter and blksnap ioctls (x86_64).
//!
//! Mirrors `linux/blk-filter.h` and `linux/fs.h` of the kernel patch and
//! `uapi/linux/blksnap.h`. Padding that C leaves implicit is an explicit
//! `_pad` field here, so that every byte of a struct is initialised and
//! nothing leaks to user space. Plain `core` only: this file is also
//! compiled into the kernel module.

use core::mem::size_of;

const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = 8;
const IOC_SIZESHIFT: u32 = 16;
const IOC_DIRSHIFT: u32 = 30;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const fn ioc(dir: u32, ty: u8, nr: u32, size: usize) -> u32 {
    (dir << IOC_DIRSHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}
const fn ior<T>(ty: u8, nr: u32) -> u32 {
    ioc(IOC_READ, ty, nr, size_of::<T>())
}
const fn iow<T>(ty: u8, nr: u32) -> u32 {
    ioc(IOC_WRITE, ty, nr, size_of::<T>())
}
const fn iowr<T>(ty: u8, nr: u32) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size_of::<T>())
}

/// Length of a filter name, NUL padding included.
pub const BLKFILTER_NAME_LENGTH: usize = 32;
/// Name of the blksnap filter.
pub const BLKSNAP_FILTER_NAME: &str = "blksnap";
/// Name of the control device under `/dev`.
pub const BLKSNAP_CTL: &str = "blksnap-control";
/// Length of [`BlksnapSnapshotinfo::image`].
pub const IMAGE_DISK_NAME_LEN: usize = 32;
/// Size of [`BlksnapSnapshotEvent`].
pub const EVENT_SIZE: usize = 4096;

/// `struct blkfilter_attach`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlkfilterAttach {
    pub name: [u8; BLKFILTER_NAME_LENGTH],
    pub opt: u64,
    pub optlen: u32,
    pub _pad: u32,
}

/// `struct blkfilter_detach`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlkfilterDetach {
    pub name: [u8; BLKFILTER_NAME_LENGTH],
}

/// `struct blkfilter_ctl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlkfilterCtl {
    pub name: [u8; BLKFILTER_NAME_LENGTH],
    pub cmd: u32,
    pub optlen: u32,
    pub opt: u64,
}

/// Block device ioctl: attach a filter.
pub const BLKFILTER_ATTACH: u32 = iowr::<BlkfilterAttach>(0x12, 142);
/// Block device ioctl: detach the filter.
pub const BLKFILTER_DETACH: u32 = iowr::<BlkfilterDetach>(0x12, 143);
/// Block device ioctl: a command of the attached filter.
pub const BLKFILTER_CTL: u32 = iowr::<BlkfilterCtl>(0x12, 144);

/// `struct blksnap_uuid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlksnapUuid {
    pub b: [u8; 16],
}

/// `enum blkfilter_ctl_blksnap`: commands of [`BLKFILTER_CTL`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkfilterCtlBlksnap {
    Cbtinfo = 0,
    Cbtmap = 1,
    Cbtdirty = 2,
    Snapshotadd = 3,
    Snapshotinfo = 4,
}

impl BlkfilterCtlBlksnap {
    /// The command with number `cmd`, if there is one.
    pub const fn from_u32(cmd: u32) -> Option<Self> {
        Some(match cmd {
            0 => Self::Cbtinfo,
            1 => Self::Cbtmap,
            2 => Self::Cbtdirty,
            3 => Self::Snapshotadd,
            4 => Self::Snapshotinfo,
            _ => return None,
        })
    }
}

/// `struct blksnap_cbtinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlksnapCbtinfo {
    pub device_capacity: u64,
    pub block_size: u32,
    pub block_count: u32,
    pub generation_id: BlksnapUuid,
    pub changes_number: u8,
    pub _pad: [u8; 7],
}

/// `struct blksnap_cbtmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlksnapCbtmap {
    pub offset: u32,
    pub length: u32,
    pub buffer: u64,
}

/// `struct blksnap_sectors`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapSectors {
    pub offset: u64,
    pub count: u64,
}

/// `struct blksnap_cbtdirty`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlksnapCbtdirty {
    pub count: u32,
    pub _pad: u32,
    pub dirty_sectors: u64,
}

/// `struct blksnap_snapshotadd`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlksnapSnapshotadd {
    pub id: BlksnapUuid,
}

/// `struct blksnap_snapshotinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlksnapSnapshotinfo {
    pub error_code: i32,
    pub image: [u8; IMAGE_DISK_NAME_LEN],
}

/// `struct blksnap_version`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapVersion {
    pub major: u16,
    pub minor: u16,
    pub revision: u16,
    pub build: u16,
}

/// The version this interface is.
pub const BLKSNAP_VERSION: BlksnapVersion = BlksnapVersion {
    major: 2,
    minor: 0,
    revision: 0,
    build: 0,
};

/// `struct blksnap_snapshot_create`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlksnapSnapshotCreate {
    pub diff_storage_limit_sect: u64,
    pub diff_storage_filename: u64,
    pub id: BlksnapUuid,
}

/// `struct blksnap_snapshot_collect`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlksnapSnapshotCollect {
    pub count: u32,
    pub _pad: u32,
    pub ids: u64,
}

/// `struct blksnap_snapshot_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlksnapSnapshotEvent {
    pub id: BlksnapUuid,
    pub timeout_ms: u32,
    pub code: u32,
    pub time_label: i64,
    pub data: [u8; EVENT_SIZE - 32],
}

impl Default for BlksnapSnapshotEvent {
    fn default() -> Self {
        Self {
            id: BlksnapUuid::default(),
            timeout_ms: 0,
            code: 0,
            time_label: 0,
            data: [0; EVENT_SIZE - 32],
        }
    }
}

/// `enum blksnap_event_codes`.
pub const BLKSNAP_EVENT_CODE_CORRUPTED: u32 = 0;
/// `enum blksnap_event_codes`.
pub const BLKSNAP_EVENT_CODE_NO_SPACE: u32 = 1;

/// `struct blksnap_event_corrupted`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlksnapEventCorrupted {
    pub dev_id_mj: u32,
    pub dev_id_mn: u32,
    pub err_code: i32,
}

/// `struct blksnap_event_no_space`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlksnapEventNoSpace {
    pub requested_nr_sect: u64,
}

const BLKSNAP: u8 = b'V';
/// Control device ioctl: the module version.
pub const IOCTL_BLKSNAP_VERSION: u32 = ior::<BlksnapVersion>(BLKSNAP, 0);
/// Control device ioctl: create a snapshot.
pub const IOCTL_BLKSNAP_SNAPSHOT_CREATE: u32 = iowr::<BlksnapSnapshotCreate>(BLKSNAP, 1);
/// Control device ioctl: destroy a snapshot.
pub const IOCTL_BLKSNAP_SNAPSHOT_DESTROY: u32 = iow::<BlksnapUuid>(BLKSNAP, 2);
/// Control device ioctl: take a snapshot.
pub const IOCTL_BLKSNAP_SNAPSHOT_TAKE: u32 = iow::<BlksnapUuid>(BLKSNAP, 3);
/// Control device ioctl: list the snapshots.
pub const IOCTL_BLKSNAP_SNAPSHOT_COLLECT: u32 = ior::<BlksnapSnapshotCollect>(BLKSNAP, 4);
/// Control device ioctl: wait for an event of a snapshot.
pub const IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT: u32 = ior::<BlksnapSnapshotEvent>(BLKSNAP, 5);

const _: () = {
    assert!(size_of::<BlkfilterAttach>() == 48);
    assert!(size_of::<BlkfilterDetach>() == 32);
    assert!(size_of::<BlkfilterCtl>() == 48);
    assert!(size_of::<BlksnapCbtinfo>() == 40);
    assert!(size_of::<BlksnapCbtmap>() == 16);
    assert!(size_of::<BlksnapSectors>() == 16);
    assert!(size_of::<BlksnapCbtdirty>() == 16);
    assert!(size_of::<BlksnapSnapshotadd>() == 16);
    assert!(size_of::<BlksnapSnapshotinfo>() == 36);
    assert!(size_of::<BlksnapVersion>() == 8);
    assert!(size_of::<BlksnapSnapshotCreate>() == 32);
    assert!(size_of::<BlksnapSnapshotCollect>() == 16);
    assert!(size_of::<BlksnapSnapshotEvent>() == EVENT_SIZE);
    assert!(size_of::<BlksnapEventCorrupted>() == 12);
    assert!(size_of::<BlksnapEventNoSpace>() == 8);
};
