//! Reading items, users and events from JSONL, CSV and TSV files.

use std::path::Path;

use hearth_recs::import::{read_all, ColumnMapping, DataFiles, RecordReader, RowError};
use hearth_recs::{Event, Item, RecsError, User};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn read<T: hearth_recs::import::FromRow>(path: &Path) -> (Vec<T>, Vec<RowError>) {
    let mut errors = Vec::new();
    let (records, summary) = read_all::<T>(path, &ColumnMapping::default(), false, &mut |e| {
        errors.push(e.clone())
    })
    .unwrap();
    assert_eq!(summary.stored as usize, records.len());
    assert_eq!(summary.skipped as usize, errors.len());
    (records, errors)
}

#[test]
fn recbole_files_load_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let inter = write(
        dir.path(),
        "ml.inter",
        b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
    );
    // Latin-1 title, as MovieLens-100K ships it.
    let item = write(
        dir.path(),
        "ml.item",
        b"item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tToy Story\t1995\tAnimation Children's Comedy\n2\tLa C\xe9r\xe9monie\t1995\tDrama\n",
    );
    let (events, errors) = read::<Event>(&inter);
    assert!(errors.is_empty());
    assert_eq!(events[0].user.0, "196");
    assert_eq!(events[0].item.0, "242");
    assert_eq!(
        events[0].kind, "rating",
        "a value without a type column is a rating"
    );
    assert_eq!(events[0].value, Some(3.0));
    assert_eq!(events[0].timestamp, 881250949);
    assert!(
        events[1].id.starts_with("row-") && events[0].id != events[1].id,
        "id-less events get ids from their content: {:?}",
        events.iter().map(|e| &e.id).collect::<Vec<_>>()
    );

    let (items, errors) = read::<Item>(&item);
    assert!(errors.is_empty());
    assert_eq!(items[0].title, "Toy Story");
    assert_eq!(items[0].categories, ["Animation", "Children's", "Comedy"]);
    assert_eq!(items[0].attributes["release_year"], "1995");
    assert_eq!(items[1].title, "La Cérémonie");

    let files = DataFiles::discover(dir.path()).unwrap();
    assert_eq!(files.events.as_deref(), Some(inter.as_path()));
    assert_eq!(files.items.as_deref(), Some(item.as_path()));
    assert_eq!(files.users, None);
}

#[test]
fn bad_rows_are_reported_with_file_and_line_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(
        dir.path(),
        "events.csv",
        b"user_id,item_id,event_type,timestamp\nu1,i1,view,1700000000\nu2,i2,click,yesterday\nu3,i3\n,i4,view,1\nu5,i5,PURCHASE,2024-01-02T03:04:05Z\n",
    );
    let (events, errors) = read::<Event>(&csv);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].kind, "purchase");
    assert_eq!(events[1].timestamp, 1704164645);
    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 4, 5]);
    assert!(
        errors[0].message.contains("timestamp"),
        "{}",
        errors[0].message
    );
    assert!(
        errors[1].message.contains("expected 4 columns, found 2"),
        "{}",
        errors[1].message
    );
    assert!(
        errors[2].message.contains("'user' is missing"),
        "{}",
        errors[2].message
    );
    assert!(errors[0]
        .to_string()
        .starts_with(&format!("{}:3:", csv.display())));

    let strict = read_all::<Event>(&csv, &ColumnMapping::default(), true, &mut |_| {});
    match strict {
        Err(RecsError::BadRow(e)) => assert_eq!(e.line, 3),
        other => panic!("strict read should fail at line 3, got {other:?}"),
    }
}

#[test]
fn jsonl_rows_and_explicit_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = write(
        dir.path(),
        "items.jsonl",
        br#"{"id": "sku-1", "title": "Kettle", "categories": ["kitchen"], "price": 24.5, "available": false, "attributes": {"colour": "red"}}

{"id": "sku-2", "title": "Mug", "price": "x"}
not json
{"code": "sku-3"}
"#,
    );
    let (items, errors) = read::<Item>(&jsonl);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].price, Some(24.5));
    assert!(!items[0].available);
    assert_eq!(items[0].attributes["colour"], "red");
    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 4, 5], "{errors:?}");
    assert!(errors[0].message.contains("'price' must be a number"));
    assert!(errors[1].message.contains("invalid JSON"));

    let users = write(dir.path(), "users.tsv", b"customer\tage\nc1\t31\n");
    let mut mapping = ColumnMapping::default();
    mapping.add("users.id=customer").unwrap();
    let (records, _) = read_all::<User>(&users, &mapping, true, &mut |_| {}).unwrap();
    assert_eq!(records[0].id.0, "c1");
    assert_eq!(records[0].attributes["age"], "31");

    // A file whose columns name no user: one clear error for the file, naming the fix.
    let events = write(dir.path(), "events.tsv", b"who\tproduct\nc1\tsku-1\n");
    let err = RecordReader::<Event>::open(&events, &ColumnMapping::default())
        .err()
        .expect("no user column");
    let message = err.to_string();
    assert!(
        message.contains("events.user") && message.contains("--map"),
        "{message}"
    );
    let mut mapping = ColumnMapping::default();
    mapping.add("user=who").unwrap();
    mapping.add("events.item=product").unwrap();
    let (events, _) = read_all::<Event>(&events, &mapping, true, &mut |_| {}).unwrap();
    assert_eq!(
        (events[0].user.0.as_str(), events[0].item.0.as_str()),
        ("c1", "sku-1")
    );
    assert_eq!(events[0].kind, "view");
    assert!(ColumnMapping::default().add("nonsense").is_err());
    assert!(ColumnMapping::default().add("orders.user=x").is_err());
}

#[test]
fn byte_order_marks_are_skipped_in_every_format_and_utf16_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bom = "\u{feff}";
    let jsonl = write(
        dir.path(),
        "events.jsonl",
        format!("{bom}{{\"user\":\"u1\",\"item\":\"i1\"}}\n{{\"user\":\"u2\",\"item\":\"i2\"}}\n")
            .as_bytes(),
    );
    let csv = write(
        dir.path(),
        "events.csv",
        format!("{bom}user_id,item_id\nu1,i1\nu2,i2\n").as_bytes(),
    );
    let tsv = write(
        dir.path(),
        "events.tsv",
        format!("{bom}user_id\titem_id\nu1\ti1\nu2\ti2\n").as_bytes(),
    );
    // No extension: the format is detected from a first line that starts with the mark.
    let bare = write(
        dir.path(),
        "events",
        format!("{bom}{{\"user\":\"u1\",\"item\":\"i1\"}}\n{{\"user\":\"u2\",\"item\":\"i2\"}}\n")
            .as_bytes(),
    );
    for path in [&jsonl, &csv, &tsv, &bare] {
        let (events, errors) = read::<Event>(path);
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        let users: Vec<&str> = events.iter().map(|e| e.user.0.as_str()).collect();
        assert_eq!(users, ["u1", "u2"], "{}", path.display());
    }
    let mut utf16 = vec![0xff, 0xfe];
    for unit in "user_id,item_id\nu1,i1\n".encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    let utf16 = write(dir.path(), "utf16.csv", &utf16);
    let err = read_all::<Event>(&utf16, &ColumnMapping::default(), false, &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("UTF-16") && err.contains("utf16.csv"), "{err}");
}

#[test]
fn content_ids_are_stable_per_file_and_keep_equal_rows_apart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("day1")).unwrap();
    std::fs::create_dir_all(dir.path().join("day2")).unwrap();
    let day1 = write(
        dir.path(),
        "day1/events.csv",
        b"user_id,item_id,timestamp\nu1,i1,100\nu1,i1,100\nu2,i3,101\n",
    );
    let day2 = write(
        dir.path(),
        "day2/events.csv",
        b"user_id,item_id,timestamp\nu1,i2,200\nu2,i3,201\nu3,i1,202\n",
    );
    let ids =
        |path: &Path| -> Vec<String> { read::<Event>(path).0.into_iter().map(|e| e.id).collect() };
    let first = ids(&day1);
    assert_eq!(first, ids(&day1), "reading a file again gives the same ids");
    assert_ne!(first[0], first[1], "two equal rows are two events");
    let second = ids(&day2);
    assert!(
        second.iter().all(|id| !first.contains(id)),
        "{first:?} {second:?}"
    );
    // The same rows under another name are the same events (a copied or moved file).
    let copy = write(dir.path(), "copy.csv", &std::fs::read(&day1).unwrap());
    assert_eq!(ids(&copy), first);
}
