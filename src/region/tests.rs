//! Tests of the mappings and the SIGBUS guard.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::Ordering;

use super::sigbus::page_size;
use super::{ReadMap, SharedMap};

fn file_with(bytes: &[u8]) -> File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f
}

#[test]
fn loads_are_bounds_and_alignment_checked() {
    let mut bytes = vec![0u8; 20];
    bytes[..4].copy_from_slice(&24u32.to_le_bytes());
    bytes[8..16].copy_from_slice(&1.5f64.to_le_bytes());
    let map = ReadMap::map(&file_with(&bytes), 20).unwrap();
    assert_eq!(map.load_used(), Some(24));
    assert_eq!(map.load_u64(8).map(f64::from_bits), Some(1.5));
    assert_eq!(map.load_u64(4), None, "unaligned");
    assert_eq!(map.load_u64(16), None, "past the end");
    assert_eq!(map.load_u64(usize::MAX - 3), None, "overflow");
    assert_eq!(map.load_u32(16), Some(0));
    assert_eq!(map.load_u32(18), None);
}

#[test]
fn words_equal_compares_whole_aligned_words_in_bounds() {
    let bytes: Vec<u8> = (0..32).collect();
    let map = ReadMap::map(&file_with(&bytes), 32).unwrap();
    assert_eq!(map.words_equal(8, &bytes[8..24]), Some(true));
    assert_eq!(map.words_equal(0, &bytes), Some(true));
    assert_eq!(map.words_equal(8, &[]), Some(true));
    let mut other = bytes[8..24].to_vec();
    other[15] ^= 1;
    assert_eq!(map.words_equal(8, &other), Some(false), "last byte differs");
    assert_eq!(map.words_equal(4, &bytes[4..12]), None, "unaligned start");
    assert_eq!(map.words_equal(8, &bytes[8..12]), None, "not whole words");
    assert_eq!(map.words_equal(24, &bytes[..16]), None, "past the end");
}

#[test]
fn reading_a_truncated_file_reads_zeros_and_says_so_instead_of_sigbus() {
    let page = page_size();
    let f = file_with(&vec![7u8; 3 * page]);
    let map = ReadMap::map(&f, 3 * page).unwrap();
    assert_eq!(map.load_u64(2 * page), Some(u64::from_ne_bytes([7; 8])));
    assert!(!map.truncated());
    f.set_len(page as u64).unwrap(); // what another process could do
    assert_eq!(map.load_u64(8), Some(u64::from_ne_bytes([7; 8])), "the first page is still there");
    assert!(!map.truncated());
    assert_eq!(map.load_u64(2 * page + 8), Some(0), "a page past the end reads as zeros");
    assert!(map.truncated());
    let mut buf = Vec::new();
    assert!(map.copy_to(page, 3 * page, &mut buf).is_some_and(|b| b.iter().all(|&x| x == 0)));
}

#[test]
fn writing_to_a_truncated_file_is_lost_not_fatal() {
    let page = page_size();
    let f = file_with(&vec![0u8; 2 * page]);
    let map = SharedMap::map(&f, 2 * page).unwrap();
    let slot = map.u64_at(page + 16).unwrap();
    slot.store(5, Ordering::Relaxed);
    f.set_len(0).unwrap();
    slot.fetch_add(1, Ordering::Relaxed); // would be SIGBUS
    assert!(map.truncated());
}

#[test]
fn copy_to_copies_words_and_the_unaligned_tail() {
    let bytes: Vec<u8> = (0..21).collect();
    let map = ReadMap::map(&file_with(&bytes), 21).unwrap();
    let mut buf = Vec::new();
    assert_eq!(map.copy_to(8, 21, &mut buf), Some(&bytes[8..21]));
    assert_eq!(map.copy_to(16, 21, &mut buf), Some(&bytes[16..21]), "reused buffer");
    assert_eq!(map.copy_to(0, 16, &mut buf), Some(&bytes[0..16]));
    assert_eq!(map.copy_to(8, 8, &mut buf), Some(&[][..]));
    assert_eq!(map.copy_to(3, 8, &mut buf), None, "unaligned start");
    assert_eq!(map.copy_to(8, 22, &mut buf), None, "past the end");
    assert!(ReadMap::map(&file_with(&[]), 0).is_err());
}
