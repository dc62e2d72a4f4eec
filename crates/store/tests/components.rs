//! The routing component table: put, look up by peer, take (read and delete), ids across
//! restarts, the bound, and a corrupt record.

use netcore::PeerId;
use store::{ComponentLimits, ComponentTable, EvictionReason, Metrics, Store, Table};

fn id(n: u8) -> PeerId {
    PeerId::new([n; 32])
}

#[test]
fn put_index_and_take_round_trip() {
    let table = ComponentTable::new(Store::in_memory().unwrap());
    let records = vec![b"edge a-b".to_vec(), b"edge b-c".to_vec(), Vec::new()];
    table
        .put_component(7, &[id(1), id(2), id(3)], &records)
        .unwrap();
    table
        .put_component(9, &[id(3), id(4)], &[b"edge c-d".to_vec()])
        .unwrap();
    assert_eq!(table.len().unwrap(), 2);
    assert_eq!(table.components_of(&id(3)).unwrap(), [7, 9]);
    assert_eq!(table.components_of(&id(1)).unwrap(), [7]);
    assert!(table.components_of(&id(5)).unwrap().is_empty());

    let taken = table.take_component(7).unwrap().unwrap();
    assert_eq!(taken.peers, [id(1), id(2), id(3)]);
    assert_eq!(taken.records, records);
    // Gone, with its index entries.
    assert_eq!(table.take_component(7).unwrap(), None);
    assert!(table.components_of(&id(1)).unwrap().is_empty());
    assert_eq!(table.components_of(&id(3)).unwrap(), [9]);
}

#[test]
fn putting_an_id_again_replaces_it_and_its_index() {
    let table = ComponentTable::new(Store::in_memory().unwrap());
    table.put_component(1, &[id(1), id(2)], &[vec![1]]).unwrap();
    table.put_component(1, &[id(2), id(3)], &[vec![2]]).unwrap();
    assert_eq!(table.len().unwrap(), 1);
    assert!(table.components_of(&id(1)).unwrap().is_empty());
    assert_eq!(table.components_of(&id(3)).unwrap(), [1]);
    assert_eq!(table.take_component(1).unwrap().unwrap().records, [vec![2]]);
}

#[test]
fn component_ids_keep_counting_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let table = ComponentTable::new(Store::open(dir.path()).unwrap());
        assert_eq!(table.next_component_id().unwrap(), 0);
        assert_eq!(table.next_component_id().unwrap(), 1);
        table.put_component(1, &[id(1)], &[vec![42]]).unwrap();
    }
    let table = ComponentTable::new(Store::open(dir.path()).unwrap());
    assert_eq!(table.next_component_id().unwrap(), 2);
    assert_eq!(table.components_of(&id(1)).unwrap(), [1]);
}

#[test]
fn at_the_bound_the_oldest_component_goes() {
    let metrics = Metrics::default();
    let store = Store::in_memory_with_metrics(metrics.clone()).unwrap();
    let table = ComponentTable::with_limits(
        store,
        ComponentLimits {
            max_components: 3,
            ..ComponentLimits::default()
        },
    );
    for n in 0..5u8 {
        table
            .put_component(u64::from(n), &[id(n), id(100)], &[vec![n]])
            .unwrap();
    }
    assert_eq!(table.len().unwrap(), 3);
    assert_eq!(table.components_of(&id(100)).unwrap(), [2, 3, 4]);
    assert!(table.components_of(&id(0)).unwrap().is_empty());
    assert_eq!(metrics.evictions(EvictionReason::ComponentLimit), 2);
}

#[test]
fn a_corrupt_component_is_a_typed_error_counted_and_deleted_with_its_index() {
    let dir = tempfile::tempdir().unwrap();
    {
        let table = ComponentTable::new(Store::open(dir.path()).unwrap());
        table
            .put_component(5, &[id(1), id(2)], &[vec![1, 2, 3]])
            .unwrap();
    }
    {
        let db = redb::Database::open(dir.path().join(store::FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let components: redb::TableDefinition<'_, u64, &[u8]> =
                redb::TableDefinition::new("components");
            let mut table = txn.open_table(components).unwrap();
            table.insert(5, [7, 7, 7].as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let metrics = Metrics::default();
    let table = ComponentTable::new(Store::open_with_metrics(dir.path(), metrics.clone()).unwrap());
    assert_eq!(table.components_of(&id(1)).unwrap(), [5]);
    assert!(matches!(
        table.take_component(5),
        Err(store::Error::CorruptRecord {
            table: "components",
            ..
        })
    ));
    assert_eq!(metrics.records_skipped_corrupt(Table::Components), 1);
    assert!(table.components_of(&id(1)).unwrap().is_empty());
    assert!(table.components_of(&id(2)).unwrap().is_empty());
    assert_eq!(table.take_component(5).unwrap(), None);
}

#[test]
fn the_byte_budget_drops_the_oldest_and_refuses_a_component_larger_than_all_of_it() {
    let metrics = Metrics::default();
    let store = Store::in_memory_with_metrics(metrics.clone()).unwrap();
    let table = ComponentTable::with_limits(
        store,
        ComponentLimits {
            max_components: 1_000,
            max_bytes: 3_000,
        },
    );
    let kib = vec![0xAB; 1000];
    for n in 0..3u8 {
        table
            .put_component(u64::from(n), &[id(n)], std::slice::from_ref(&kib))
            .unwrap();
    }
    // Three 1 KB records plus their framing are just over 3,000 bytes: the oldest went.
    assert_eq!(table.len().unwrap(), 2);
    assert!(table.components_of(&id(0)).unwrap().is_empty());
    assert!(table.stored_bytes().unwrap() <= 3_000);
    assert_eq!(metrics.evictions(EvictionReason::ComponentLimit), 1);

    // Replacing a component counts its old bytes out.
    let before = table.stored_bytes().unwrap();
    table
        .put_component(2, &[id(2)], std::slice::from_ref(&kib))
        .unwrap();
    assert_eq!(table.stored_bytes().unwrap(), before);
    // Taking one counts it out.
    table.take_component(2).unwrap().unwrap();
    assert!(table.stored_bytes().unwrap() < before);

    // Too large alone: refused, nothing changed.
    let len = table.len().unwrap();
    assert!(matches!(
        table.put_component(9, &[id(9)], &[vec![0; 4_000]]),
        Err(store::Error::ComponentTooLarge { max: 3_000, .. })
    ));
    assert_eq!(table.len().unwrap(), len);
    assert!(table.components_of(&id(9)).unwrap().is_empty());

    // A component that takes the whole budget evicts every other one, never itself.
    table
        .put_component(10, &[id(10)], &[vec![0; 2_900]])
        .unwrap();
    assert_eq!(table.len().unwrap(), 1);
    assert_eq!(table.components_of(&id(10)).unwrap(), [10]);
}
