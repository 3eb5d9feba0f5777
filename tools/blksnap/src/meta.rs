// SPDX-License-Identifier: GPL-2.0
//! The metadata beside a backup image, NAME.meta.json: what the image holds
//! and the change tracking state it was taken at, which the next incremental
//! backup starts from.

use crate::copy::NewFile;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

const IMAGE_SUFFIX: &str = ".img";
const META_SUFFIX: &str = ".meta.json";

/// How the last backup made the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Full,
    Incremental,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The device backed up, as given.
    pub device: String,
    /// Its size in bytes, which is the image's.
    pub device_capacity: u64,
    /// The change tracking block size in bytes.
    pub block_size: u32,
    /// The change tracking generation, 32 hexadecimal digits.
    pub generation_id: String,
    /// The number of the snapshot the image is a copy of, in that generation.
    pub changes_number: u8,
    /// When the snapshot was taken, in seconds since the epoch.
    pub time: u64,
    pub kind: Kind,
    /// The bytes the backup read from the snapshot.
    pub bytes_copied: u64,
    /// False while an incremental backup updates the image in place: the
    /// numbers above are then still those of the previous backup, so the
    /// next backup copies whatever this one may have missed.
    pub complete: bool,
}

impl Meta {
    fn check(&self) -> Result<()> {
        if self.generation_id.len() != 32 || !self.generation_id.bytes().all(|c| c.is_ascii_hexdigit()) {
            bail!(
                "generation_id {:?} is not 32 hexadecimal digits",
                self.generation_id
            );
        }
        if !self.block_size.is_power_of_two() {
            bail!("block_size {} is not a power of two", self.block_size);
        }
        Ok(())
    }
}

/// The image and metadata paths of the backup of device `name` in `dir`.
pub fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}{IMAGE_SUFFIX}")),
        dir.join(format!("{name}{META_SUFFIX}")),
    )
}

/// The metadata path beside `image`, if its name is NAME.img.
pub fn path_of_image(image: &Path) -> Option<PathBuf> {
    let name = image.file_name()?.to_str()?.strip_suffix(IMAGE_SUFFIX)?;
    Some(image.with_file_name(format!("{name}{META_SUFFIX}")))
}

/// The metadata at `path`, or None if there is no such file.
pub fn load(path: &Path) -> Result<Option<Meta>> {
    let text = match std::fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        result => result.with_context(|| format!("cannot read {}", path.display()))?,
    };
    let meta: Meta = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not backup metadata", path.display()))?;
    meta.check()
        .with_context(|| format!("{} is not valid", path.display()))?;
    Ok(Some(meta))
}

/// Replace the metadata at `path` with `meta` at once: a crash leaves either
/// the old or the new one.
pub fn save(path: &Path, meta: &Meta) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(meta)?;
    text.push(b'\n');
    let file = NewFile::create(path)?;
    file.write_at(&text, 0)?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            device: "/dev/loop0".into(),
            device_capacity: 1 << 28,
            block_size: 65536,
            generation_id: "00112233445566778899aabbccddeeff".into(),
            changes_number: 7,
            time: 1_700_000_000,
            kind: Kind::Incremental,
            bytes_copied: 3 << 16,
            complete: true,
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loop0.meta.json");
        assert_eq!(load(&path).unwrap(), None);
        save(&path, &meta()).unwrap();
        assert_eq!(load(&path).unwrap(), Some(meta()));
        let second = Meta {
            kind: Kind::Full,
            complete: false,
            ..meta()
        };
        save(&path, &second).unwrap();
        assert_eq!(load(&path).unwrap(), Some(second));
        // Nothing but the metadata is left in the directory.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["loop0.meta.json"]);
    }

    #[test]
    fn format() {
        let value = serde_json::to_value(meta()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "device": "/dev/loop0", "device_capacity": 268435456u64, "block_size": 65536,
                "generation_id": "00112233445566778899aabbccddeeff", "changes_number": 7,
                "time": 1700000000u64, "kind": "incremental", "bytes_copied": 196608,
                "complete": true
            })
        );
        // Fields added later are ignored.
        let mut more = value.clone();
        more["comment"] = "x".into();
        assert_eq!(serde_json::from_value::<Meta>(more).unwrap(), meta());
    }

    #[test]
    fn rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.meta.json");
        let mut bad = serde_json::to_value(meta()).unwrap();
        let cases = [
            ("generation_id", serde_json::json!("0011")),
            (
                "generation_id",
                serde_json::json!("zz112233445566778899aabbccddeeff"),
            ),
            ("block_size", serde_json::json!(3000)),
            ("changes_number", serde_json::json!(256)),
            ("kind", serde_json::json!("partial")),
        ];
        for (field, value) in cases {
            let good = bad[field].clone();
            bad[field] = value;
            std::fs::write(&path, bad.to_string()).unwrap();
            let err = format!("{:#}", load(&path).unwrap_err());
            assert!(err.contains("m.meta.json"), "{field}: {err}");
            bad[field] = good;
        }
        std::fs::write(&path, "{").unwrap();
        assert!(format!("{:#}", load(&path).unwrap_err()).contains("is not backup metadata"));
        // A directory in the way is an error, not a missing backup.
        assert!(load(dir.path()).is_err());
    }

    #[test]
    fn names() {
        let (image, meta) = paths(Path::new("/b"), "loop0");
        assert_eq!(image, Path::new("/b/loop0.img"));
        assert_eq!(meta, Path::new("/b/loop0.meta.json"));
        assert_eq!(path_of_image(&image), Some(meta));
        assert_eq!(
            path_of_image(Path::new("x.img")),
            Some(PathBuf::from("x.meta.json"))
        );
        assert_eq!(path_of_image(Path::new("/b/loop0.raw")), None);
        assert_eq!(path_of_image(Path::new("/")), None);
    }
}
