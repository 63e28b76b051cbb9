//! The release format's framing on the real sample records.

use std::collections::HashMap;

use nasbench::dataset::tfrecord::scan;

const SAMPLE: &[u8] = include_bytes!("fixtures/nasbench_real_sample.tfrecord");

#[test]
fn real_sample_frames_and_checks() {
    let (frames, err) = scan(SAMPLE);
    assert_eq!(err, None);
    assert_eq!(frames.len(), 18);
    let mut per_hash: HashMap<String, Vec<i64>> = HashMap::new();
    for f in &frames {
        let data = f.check(SAMPLE).unwrap();
        // Each record is the JSON row [hash, epochs, adjacency, ops, metrics].
        let row: (String, i64, String, String, String) = serde_json::from_slice(data).unwrap();
        per_hash.entry(row.0).or_default().push(row.1);
    }
    let mut readme = per_hash["28cfc7874f6d200472e1a9dcd8650aa0"].clone();
    readme.sort_unstable();
    assert_eq!(readme, [4, 4, 4, 12, 12, 12, 36, 36, 36, 108, 108, 108]);
    assert_eq!(
        per_hash["00005c142e6f48ac74fdcf73e3439874"],
        [108, 108, 108]
    );
    assert_eq!(
        per_hash["00019e2cbab0bc93ca1a7816a099b2bd"],
        [108, 108, 108]
    );
}

#[test]
fn corrupt_sample_names_record_and_offset() {
    let (frames, _) = scan(SAMPLE);
    let victim = frames[7];
    let mut bad = SAMPLE.to_vec();
    bad[victim.offset as usize + 12 + 5] ^= 0x20;
    let (frames, err) = scan(&bad);
    assert_eq!(err, None, "only the data is corrupt: the frames are intact");
    let e = frames.iter().find_map(|f| f.check(&bad).err()).unwrap();
    assert_eq!(e.index(), 7);
    assert!(
        e.to_string().starts_with(&format!(
            "record 7 at byte {}: data CRC mismatch",
            victim.offset
        )),
        "{e}"
    );
}
