//! One of this process's `.db` files, open for writing: key → value offset, appends and
//! growth.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hashbrown::HashMap;

use crate::error::{Error, ErrorKind, Result};
use crate::file;
use crate::format;
use crate::region::SharedMap;

/// A value slot and its timestamp slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntrySlots {
    pub(crate) value: &'static AtomicU64,
    pub(crate) timestamp: &'static AtomicU64,
}

#[derive(Debug)]
pub(crate) struct DbFile {
    path: PathBuf,
    file: File,
    map: SharedMap,
    /// The mappings `map` replaced as the file grew: handles still write through them,
    /// so a truncation met there counts too.
    older_maps: Vec<SharedMap>,
    used_word: &'static AtomicU32,
    used: usize,
    positions: HashMap<Box<[u8]>, usize>,
}

impl DbFile {
    /// Opens (or creates) `dir/name`, reserves its blocks and indexes the entries it
    /// already holds, so that a writer with the same ID continues the stored values.
    pub(crate) fn open(dir: &Path, name: &str, mode: u32) -> Result<DbFile> {
        let path = dir.join(name);
        let file = file::open_or_create_db(dir, name, mode)?;
        let mut capacity = file::size(&file, &path)?;
        if capacity < format::HEADER_LEN {
            // A zero-length file left by a Python writer killed between open and truncate.
            file::reserve(&file, &path, 0, format::INITIAL_SIZE)?;
            capacity = format::INITIAL_SIZE;
        } else {
            // Python creates sparse files: give every existing page its blocks now, so that
            // a later write into a hole cannot fail with SIGBUS.
            file::reserve(&file, &path, 0, capacity)?;
        }
        let data = file::read_all(&file, &path, capacity)?;
        let corrupt = |e: format::FormatError| {
            Error::new(ErrorKind::CorruptFile)
                .at(&path)
                .expected("a file in prometheus_client's format, to continue")
                .found(e.to_string())
        };
        let used = format::checked_used(&data).map_err(corrupt)?;
        let mut positions = HashMap::new();
        for entry in format::entries(&data, used) {
            let entry = entry.map_err(corrupt)?;
            positions.entry(entry.key.into()).or_insert(entry.value_offset);
        }
        let map = SharedMap::map(&file, capacity).map_err(|e| Error::io(&path, e).during("mapping"))?;
        let used_word = map.u32_at(0).expect("a mapping holds at least its header");
        if used_word.load(Ordering::Acquire) == 0 {
            used_word.store(format::HEADER_LEN as u32, Ordering::Release);
        }
        Ok(DbFile { path, file, map, older_maps: Vec::new(), used_word, used, positions })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The slots of every key, in order, appending a zero entry for each new one. The
    /// new entries are written with one `pwrite` and published with one store of
    /// `used`, after growing the file (once) if they do not fit. On an error nothing
    /// is published.
    pub(crate) fn slots_of_all(&mut self, keys: &[&[u8]]) -> Result<Vec<EntrySlots>> {
        if self.map.truncated() || self.older_maps.iter().any(SharedMap::truncated) {
            return Err(Error::new(ErrorKind::CorruptFile).at(&self.path).expected(
                "a file only this writer changes, found it truncated under its mapping by another process \
                 (the writes that met the missing pages are lost)",
            ));
        }
        let mut appended: HashMap<&[u8], usize> = HashMap::new();
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(keys.len());
        for &key in keys {
            if let Some(&offset) = self.positions.get(key).or_else(|| appended.get(key)) {
                offsets.push(offset);
                continue;
            }
            if i32::try_from(key.len()).is_err() {
                return Err(Error::new(ErrorKind::FileTooLarge).at(&self.path).expected("a key shorter than 2 GiB"));
            }
            let offset = self.used + bytes.len() + format::value_offset_in_entry(key.len());
            format::encode_entry(&mut bytes, key, 0.0, 0.0);
            appended.insert(key, offset);
            offsets.push(offset);
        }
        if !bytes.is_empty() {
            let needed = self.used + bytes.len();
            if needed > self.map.len() {
                self.grow(needed)?;
            }
            // Publish protocol: the entries' bytes first, then `used`.
            file::write_at(&self.file, &self.path, &bytes, self.used)?;
            self.used = needed;
            self.used_word.store(needed as u32, Ordering::Release);
            self.positions.extend(appended.into_iter().map(|(key, offset)| (Box::from(key), offset)));
        }
        Ok(offsets
            .into_iter()
            .map(|offset| EntrySlots {
                value: self.map.u64_at(offset).expect("indexed entries lie inside the mapping"),
                timestamp: self.map.u64_at(offset + 8).expect("indexed entries lie inside the mapping"),
            })
            .collect())
    }

    fn grow(&mut self, needed: usize) -> Result<()> {
        let capacity = format::grown_capacity(self.map.len(), needed)
            .ok_or_else(|| Error::new(ErrorKind::FileTooLarge).at(&self.path).expected("at most 2 GiB per file"))?;
        let old = self.map.len();
        file::reserve(&self.file, &self.path, old, capacity - old)?;
        // The old mapping stays: slots handed out from it remain valid and share the
        // same page cache pages as the new one.
        let map = SharedMap::map(&self.file, capacity).map_err(|e| Error::io(&self.path, e).during("mapping"))?;
        self.older_maps.push(std::mem::replace(&mut self.map, map));
        self.used_word = self.map.u32_at(0).expect("a mapping holds at least its header");
        Ok(())
    }
}
