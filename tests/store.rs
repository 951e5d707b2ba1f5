//! The store through its public API, checked against the filesystem it leaves behind.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, SystemTime};

use rebox::digest::{Digest, DigestFunction};
use rebox::store::{OBJECT_MODE, Store, StoreError};
use sha2::Digest as _;

fn open(root: &Path) -> Store {
    Store::open(root, DigestFunction::Sha256).expect("open store")
}

/// Regular files anywhere under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            found.extend(files_under(&entry.path()));
        } else {
            found.push(entry.path());
        }
    }
    found
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

/// Sets an object's mtime an hour back, so that a later touch shows.
fn age(path: &Path) -> SystemTime {
    let old = SystemTime::now() - Duration::from_secs(3600);
    File::open(path).unwrap().set_modified(old).unwrap();
    mtime(path)
}

/// Replaces a stored object's content behind the store's back.
fn tamper(path: &Path, content: &[u8]) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o444)).unwrap();
}

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn objects_are_read_only_at_buildbox_casd_paths() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let data = b"the layout is a contract".to_vec();
    let digest = store.put_bytes(&data).unwrap();

    let hex = const_hex::encode(sha2::Sha256::digest(&data));
    assert_eq!(digest.to_string(), format!("{hex}/{}", data.len()));
    let expected = format!("{}/cas/objects/{}/{}", root.path().display(), &hex[..2], &hex[2..]);
    assert_eq!(store.object_path(&digest).to_str().unwrap(), expected);
    assert_eq!(fs::read(&expected).unwrap(), data);
    let mode = fs::metadata(&expected).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o444, "mode {mode:o}");
    assert_eq!(OBJECT_MODE, 0o444);
    assert_eq!(files_under(&root.path().join("cas/objects")), [PathBuf::from(&expected)]);
    assert!(files_under(&root.path().join("cas/tmp")).is_empty(), "temporary files left behind");
}

#[test]
fn fan_out_directories_are_made_once_and_a_write_makes_one_that_went_missing() {
    let root = tempfile::tempdir().unwrap();
    let objects = root.path().join("cas/objects");
    let store = open(root.path());
    assert_eq!(fs::read_dir(&objects).unwrap().count(), 0, "opening alone makes none");
    store.make_fan_out_dirs();
    let mut made: Vec<String> =
        fs::read_dir(&objects).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    made.sort();
    let expected: Vec<String> = (0..=u8::MAX).map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(made, expected);
    assert!(expected.iter().all(|name| objects.join(name).is_dir()));

    // Once made, asking again costs one lookup, not 256: a directory removed meanwhile stays
    // missing until a write needs it, and that write makes it.
    let data = b"a blob in a fan-out directory that went missing";
    let digest = DigestFunction::Sha256.hash_bytes(data);
    let fan_out = objects.join(&digest.hash_hex()[..2]);
    fs::remove_dir(&fan_out).unwrap();
    drop(store);
    let store = open(root.path());
    store.make_fan_out_dirs();
    assert!(!fan_out.exists(), "an existing store's fan-out directories are not made again");
    store.put_bytes(data).unwrap();
    assert_eq!(fs::read(store.object_path(&digest)).unwrap(), data);
}

#[test]
fn content_not_matching_its_digest_is_never_stored() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let good = b"good content".to_vec();
    let digest = DigestFunction::Sha256.hash_bytes(&good);
    let evil = b"evil content".to_vec(); // same length, other hash

    match store.put_bytes_expecting(&digest, &evil) {
        Err(StoreError::DigestMismatch { expected, actual, path: None }) => {
            assert_eq!(expected, digest);
            assert_eq!(*actual, DigestFunction::Sha256.hash_bytes(&evil));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    let short = &good[..4];
    assert!(matches!(
        store.put_bytes_expecting(&digest, short),
        Err(StoreError::SizeMismatch { actual: 4, path: None, .. })
    ));
    let error = store.put_reader(&evil[..], Some(&digest)).unwrap_err();
    assert!(error.to_string().contains("not stored"), "{error}");
    assert!(matches!(
        store.put_reader(&b"good content, and more"[..], Some(&digest)),
        Err(StoreError::SizeMismatch { .. })
    ));
    let input = root.path().join("input");
    fs::write(&input, &evil).unwrap();
    assert!(matches!(store.put_file(&input, Some(&digest)), Err(StoreError::DigestMismatch { .. })));

    // A streaming writer refuses as soon as the stream outgrows the expected size.
    let mut writer = store.writer(Some(digest)).unwrap();
    writer.write_all(&good).unwrap();
    assert!(matches!(writer.write_all(b"!"), Err(StoreError::SizeMismatch { actual: 13, .. })));
    drop(writer);

    assert!(!store.object_path(&digest).exists());
    assert!(!store.contains(&digest));
    assert_eq!(store.usage(), 0);
    assert!(files_under(&root.path().join("cas/objects")).is_empty());
    assert!(files_under(&root.path().join("cas/tmp")).is_empty(), "refused content left behind");

    store.put_bytes_expecting(&digest, &good).unwrap();
    assert_eq!(store.read(&digest).unwrap(), good);
}

#[test]
fn digests_of_another_function_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let sha1 = DigestFunction::Sha1.hash_bytes(b"x");
    let error = store.put_bytes_expecting(&sha1, b"x").unwrap_err();
    assert!(matches!(error, StoreError::BadDigest(_)), "{error:?}");
    assert!(error.to_string().contains("SHA256 hashes have 64"), "{error}");
    assert!(matches!(store.writer(Some(sha1)), Err(StoreError::BadDigest(_))));
    assert!(matches!(store.put_reader(&b"x"[..], Some(&sha1)), Err(StoreError::BadDigest(_))));
}

#[test]
fn a_dropped_writer_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let data = blob(100_000, 1);
    let mut writer = store.writer(None).unwrap();
    writer.write_all(&data).unwrap();
    assert_eq!(writer.written(), 100_000);
    // The data is in an anonymous (O_TMPFILE) file: nothing a reader could find has a name yet.
    assert!(files_under(&root.path().join("cas/tmp")).is_empty());
    assert!(files_under(&root.path().join("cas/objects")).is_empty());
    drop(writer);
    assert!(files_under(&root.path().join("cas/tmp")).is_empty());
    assert!(files_under(&root.path().join("cas/objects")).is_empty());
    assert_eq!(store.usage(), 0);
}

#[test]
fn eight_threads_writing_one_blob_all_succeed_and_count_it_once() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let data = Arc::new(blob(1 << 20, 7));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (store, data, barrier) = (store.clone(), Arc::clone(&data), Arc::clone(&barrier));
            thread::spawn(move || {
                let mut writer = store.writer(None).unwrap();
                writer.write_all(&data).unwrap();
                // Everyone has a complete temporary file before anyone publishes.
                barrier.wait();
                writer.commit()
            })
        })
        .collect();
    let digests: Vec<Digest> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
    let digest = DigestFunction::Sha256.hash_bytes(&data);
    assert!(digests.iter().all(|d| *d == digest), "{digests:?}");
    assert_eq!(files_under(&root.path().join("cas/objects")), [store.object_path(&digest)]);
    assert!(files_under(&root.path().join("cas/tmp")).is_empty());
    assert_eq!(store.usage(), 1 << 20);
    assert_eq!(store.read_verified(&digest).unwrap(), *data);
}

#[test]
fn usage_is_recovered_on_reopen_and_kept_right_by_remove() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let sizes = [0usize, 1, 4096, 100_000, 1 << 20, 3];
    let digests: Vec<Digest> =
        sizes.iter().enumerate().map(|(i, &len)| store.put_bytes(&blob(len, i as u8)).unwrap()).collect();
    store.put_bytes(&blob(4096, 2)).unwrap(); // a duplicate counts once
    let total: u64 = sizes.iter().map(|&s| s as u64).sum();
    assert_eq!(store.usage(), total);
    let on_disk: u64 =
        files_under(&root.path().join("cas/objects")).iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    assert_eq!(on_disk, total);
    drop(store);

    let store = open(root.path());
    assert_eq!(store.usage(), total, "usage recovered by the start-up scan");
    assert!(store.remove(&digests[4]).unwrap());
    assert_eq!(store.usage(), total - (1 << 20));
    assert!(!store.remove(&digests[4]).unwrap(), "a second remove finds nothing");
    assert_eq!(store.usage(), total - (1 << 20));
    assert!(!store.object_path(&digests[4]).exists());
    assert!(matches!(store.read(&digests[4]), Err(StoreError::NotFound { .. })));

    let listed = store.objects().unwrap();
    let mut listed_digests: Vec<Digest> = listed.iter().map(|o| o.digest).collect();
    listed_digests.sort();
    let mut expected: Vec<Digest> = digests.iter().copied().filter(|d| *d != digests[4]).collect();
    expected.sort();
    assert_eq!(listed_digests, expected);
    drop(store);
    assert_eq!(open(root.path()).usage(), total - (1 << 20));
}

#[test]
fn find_missing_reports_exactly_the_missing_and_touches_the_present() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let mut query = Vec::new();
    let mut missing = Vec::new();
    let mut present = Vec::new();
    // More than one batch, so that the parallel path runs too.
    for i in 0..2000u32 {
        let data = format!("blob {i}").into_bytes();
        if i % 3 == 0 {
            let digest = DigestFunction::Sha256.hash_bytes(&data);
            missing.push(digest);
            query.push(digest);
        } else {
            let digest = store.put_bytes(&data).unwrap();
            present.push(digest);
            query.push(digest);
        }
    }
    let aged: Vec<SystemTime> = present.iter().map(|d| age(&store.object_path(d))).collect();
    // `contains` has no side effect.
    assert!(present.iter().all(|d| store.contains(d)));
    assert!(missing.iter().all(|d| !store.contains(d)));
    assert_eq!(mtime(&store.object_path(&present[0])), aged[0]);

    assert_eq!(store.find_missing_to_upload(&query), missing);
    assert_eq!(store.find_missing(&query), missing);
    let mut retained = query.clone();
    store.retain_missing_to_upload(&mut retained);
    assert_eq!(retained, missing, "in place, as FindMissingBlobs answers");
    let mut small = vec![present[0], missing[0], present[1], missing[1], missing[0]];
    store.retain_missing_to_upload(&mut small);
    assert_eq!(small, [missing[0], missing[1], missing[0]], "a small batch, duplicates kept");
    for (digest, old) in present.iter().zip(&aged) {
        assert!(mtime(&store.object_path(digest)) > *old, "{digest} was not touched");
    }
    assert!(missing.iter().all(|d| !store.object_path(d).exists()));
    // The empty blob is always present; a known hash with a wrong size is not.
    let empty = DigestFunction::Sha256.hash_bytes(b"");
    let wrong_size = Digest::from_hex(&present[0].hash_hex(), present[0].size_i64() + 1).unwrap();
    assert_eq!(store.find_missing(&[empty, wrong_size, present[1]]), [wrong_size]);
}

#[test]
fn find_missing_sees_objects_removed_or_added_behind_the_stores_back() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let removed = store.put_bytes(b"removed by someone else").unwrap();
    let kept = store.put_bytes(b"kept").unwrap();
    fs::remove_file(store.object_path(&removed)).unwrap();
    assert_eq!(
        store.find_missing(&[removed, kept]),
        [removed],
        "a removed object must not be reported present"
    );
    assert_eq!(store.find_missing_to_upload(&[removed, kept]), [removed], "nor when deciding what to upload");

    // Another store (as another process would) adds a blob after this one opened the root.
    let data = b"written by another process";
    let digest = open(root.path()).put_bytes(data).unwrap();
    assert!(store.contains(&digest));
    // Deciding what to upload, this store does not know it yet: the client uploads it again,
    // which must succeed and leave it known, counted once.
    assert_eq!(store.find_missing_to_upload(&[digest]), [digest]);
    let usage = store.usage();
    store.put_bytes_expecting(&digest, data).unwrap();
    assert_eq!(store.find_missing_to_upload(&[digest]), []);
    assert_eq!(store.usage(), usage, "an object already on disk is not counted again");
    // Where a wrong "missing" would fail a stage, the filesystem is asked.
    let third = open(root.path()).put_bytes(b"also from elsewhere").unwrap();
    assert_eq!(store.find_missing(&[digest, third]), []);
    // A store opened afterwards knows everything on disk.
    assert_eq!(open(root.path()).find_missing_to_upload(&[digest, kept, removed]), [removed]);
}

#[test]
fn a_store_opened_without_a_scan_asks_the_filesystem() {
    let root = tempfile::tempdir().unwrap();
    let before = open(root.path()).put_bytes(b"stored before").unwrap();
    let store = Store::open_unscanned(root.path(), DigestFunction::Sha256).unwrap();
    assert_eq!(store.usage(), 0, "no scan: only this process's own writes are counted");
    let later = open(root.path()).put_bytes(b"stored by another process later").unwrap();
    let absent = DigestFunction::Sha256.hash_bytes(b"absent");
    assert_eq!(store.find_missing_to_upload(&[before, later, absent]), [absent]);
    store.put_bytes(b"own").unwrap();
    assert_eq!(store.usage(), 3);
}

#[test]
fn opening_a_blob_touches_it() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let digest = store.put_bytes(b"read me").unwrap();
    let path = store.object_path(&digest);
    let old = age(&path);
    assert!(store.verify(&digest).unwrap());
    assert_eq!(mtime(&path), old, "verification is not a use");
    assert_eq!(store.read(&digest).unwrap(), b"read me");
    assert!(mtime(&path) > old);
    let old = age(&path);
    drop(store.open_blob(&digest).unwrap());
    assert!(mtime(&path) > old);
}

#[test]
fn tampered_objects_are_detected() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let digest = store.put_bytes(b"original").unwrap();
    let path = store.object_path(&digest);
    tamper(&path, b"tampered");
    assert_eq!(store.read(&digest).unwrap(), b"tampered", "plain reads do not re-hash");
    match store.read_verified(&digest) {
        Err(StoreError::DigestMismatch { expected, actual, path: Some(p) }) => {
            assert_eq!(expected, digest);
            assert_eq!(*actual, DigestFunction::Sha256.hash_bytes(b"tampered"));
            assert_eq!(p, path);
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!store.verify(&digest).unwrap());
    assert_eq!(store.rehash(&digest).unwrap(), DigestFunction::Sha256.hash_bytes(b"tampered"));
}

#[test]
fn a_truncated_object_counts_as_missing_and_is_replaced_on_the_next_put() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let data = blob(10_000, 3);
    let digest = store.put_bytes(&data).unwrap();
    let path = store.object_path(&digest);
    tamper(&path, &data[..5000]);
    drop(store);
    let store = open(root.path());
    assert_eq!(store.usage(), 5000);
    assert!(!store.contains(&digest));
    assert_eq!(store.find_missing(&[digest]), [digest]);
    assert!(!store.verify(&digest).unwrap());
    assert!(matches!(store.read(&digest), Err(StoreError::SizeMismatch { actual: 5000, .. })));

    assert_eq!(store.put_bytes(&data).unwrap(), digest);
    assert_eq!(store.read_verified(&digest).unwrap(), data);
    assert_eq!(store.usage(), 10_000);
}

#[test]
fn the_empty_blob_is_always_readable() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let empty = DigestFunction::Sha256.hash_bytes(b"");
    assert!(store.contains(&empty));
    assert!(!store.object_path(&empty).exists());
    assert_eq!(store.read_verified(&empty).unwrap(), b"");
    assert!(store.object_path(&empty).exists(), "stored on first read");
    assert_eq!(store.usage(), 0);
}

#[test]
fn put_file_and_put_reader_store_the_same_object() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let data = blob(3 * 256 * 1024 + 5, 9);
    let input = root.path().join("input");
    fs::write(&input, &data).unwrap();
    let from_file = store.put_file(&input, None).unwrap();
    let from_reader = store.put_reader(&data[..], Some(&from_file)).unwrap();
    assert_eq!(from_file, from_reader);
    assert_eq!(from_file, DigestFunction::Sha256.hash_bytes(&data));
    assert_eq!(store.usage(), data.len() as u64);
    let error = store.put_file(&root.path().join("absent"), None).unwrap_err();
    assert!(matches!(error, StoreError::Io { action: "open", .. }), "{error:?}");
    assert!(error.to_string().contains("absent"), "{error}");
}

mod round_trip {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn put_then_read_gives_the_bytes_back(data in proptest::collection::vec(any::<u8>(), 0..20_000)) {
            for function in DigestFunction::ALL {
                let root = tempfile::tempdir().unwrap();
                let store = Store::open(root.path(), function).unwrap();
                let digest = store.put_bytes(&data).unwrap();
                prop_assert_eq!(digest, function.hash_bytes(&data));
                prop_assert_eq!(store.read_verified(&digest).unwrap(), data.clone());
                prop_assert_eq!(store.put_reader(&data[..], Some(&digest)).unwrap(), digest);
                prop_assert!(store.verify(&digest).unwrap());
                prop_assert_eq!(store.find_missing(&[digest]), Vec::<Digest>::new());
            }
        }
    }
}
