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
        let corrupt = |e: format::FormatError| Error::new(ErrorKind::CorruptFile).at(&path).expected(e.to_string());
        let used = format::checked_used(&data).map_err(corrupt)?;
        let mut positions = HashMap::new();
        for entry in format::entries(&data, used) {
            let entry = entry.map_err(corrupt)?;
            positions.entry(entry.key.into()).or_insert(entry.value_offset);
        }
        let map = SharedMap::map(&file, capacity).map_err(|e| Error::io(&path, e))?;
        let used_word = map.u32_at(0).expect("a mapping holds at least its header");
        if used_word.load(Ordering::Acquire) == 0 {
            used_word.store(format::HEADER_LEN as u32, Ordering::Release);
        }
        Ok(DbFile { path, file, map, older_maps: Vec::new(), used_word, used, positions })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The slots of `key`, appending a zero entry for it when it is new.
    pub(crate) fn slots(&mut self, key: &[u8]) -> Result<EntrySlots> {
        if self.map.truncated() || self.older_maps.iter().any(SharedMap::truncated) {
            return Err(Error::new(ErrorKind::CorruptFile).at(&self.path).expected(
                "a file only this writer changes, found it truncated under its mapping by another process \
                 (the writes that met the missing pages are lost)",
            ));
        }
        let offset = match self.positions.get(key) {
            Some(&offset) => offset,
            None => self.append(key)?,
        };
        Ok(EntrySlots {
            value: self.map.u64_at(offset).expect("indexed entries lie inside the mapping"),
            timestamp: self.map.u64_at(offset + 8).expect("indexed entries lie inside the mapping"),
        })
    }

    fn append(&mut self, key: &[u8]) -> Result<usize> {
        if i32::try_from(key.len()).is_err() {
            return Err(Error::new(ErrorKind::FileTooLarge).at(&self.path).expected("a key shorter than 2 GiB"));
        }
        let needed = self.used + format::entry_len(key.len());
        if needed > self.map.len() {
            self.grow(needed)?;
        }
        let mut entry = Vec::with_capacity(format::entry_len(key.len()));
        format::encode_entry(&mut entry, key, 0.0, 0.0);
        // Publish protocol: the entry's bytes first, then `used`.
        file::write_at(&self.file, &self.path, &entry, self.used)?;
        let value_offset = self.used + format::value_offset_in_entry(key.len());
        self.used = needed;
        self.used_word.store(needed as u32, Ordering::Release);
        self.positions.insert(key.into(), value_offset);
        Ok(value_offset)
    }

    fn grow(&mut self, needed: usize) -> Result<()> {
        let capacity = format::grown_capacity(self.map.len(), needed)
            .ok_or_else(|| Error::new(ErrorKind::FileTooLarge).at(&self.path).expected("at most 2 GiB per file"))?;
        let old = self.map.len();
        file::reserve(&self.file, &self.path, old, capacity - old)?;
        // The old mapping stays: slots handed out from it remain valid and share the
        // same page cache pages as the new one.
        let map = SharedMap::map(&self.file, capacity).map_err(|e| Error::io(&self.path, e))?;
        self.older_maps.push(std::mem::replace(&mut self.map, map));
        self.used_word = self.map.u32_at(0).expect("a mapping holds at least its header");
        Ok(())
    }
}
