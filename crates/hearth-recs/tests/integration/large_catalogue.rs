//! A catalogue large enough that serving goes through the HNSW graph over the ALS factors
//! instead of scoring every item: the answers must match exact scoring.

use hearth_recs::bundle::{RecsBundle, TrainReport};
use hearth_recs::models::{top_k, Als, AlsParams, ItemKnn, ItemKnnParams, Popularity};
use hearth_recs::models::{History, PopularityParams, Scorer};
use hearth_recs::serve::{ItemFilter, Recommender};
use hearth_recs::train::{ModelParams, TrainedModel};
use hearth_recs::{Dataset, Event, EventWeights, Item, ItemId, UserId};

/// 30,000 items in 300 taste groups; each user mostly chooses within two groups.
fn dataset() -> (Dataset, Vec<Event>) {
    let (n_items, n_users, groups) = (30_000usize, 3_000usize, 300usize);
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |m: usize| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % m as u64) as usize
    };
    let items: Vec<Item> = (0..n_items)
        .map(|i| Item {
            id: ItemId(format!("i{i}")),
            title: format!("item {i}"),
            categories: vec![format!("g{}", i % groups)],
            ..Default::default()
        })
        .collect();
    let mut events = Vec::new();
    for u in 0..n_users {
        let tastes = [next(groups), next(groups)];
        for k in 0..40 {
            let group = if next(10) == 0 {
                next(groups)
            } else {
                tastes[k % 2]
            };
            let item = group + groups * next(n_items / groups);
            events.push(Event {
                id: format!("{u}-{k}"),
                user: UserId(format!("u{u}")),
                item: ItemId(format!("i{item}")),
                kind: "purchase".into(),
                value: None,
                timestamp: k as i64,
            });
        }
    }
    let data = Dataset::build(items, Vec::new(), &events, &EventWeights::default());
    (data, events)
}

#[test]
fn a_large_catalogue_is_served_through_the_graph_with_exact_answers() {
    let (data, events) = dataset();
    let matrix = data.matrix(&data.interactions);
    let params = AlsParams {
        factors: 32,
        iterations: 6,
        ..AlsParams::default()
    };
    let als = Als::train(&matrix, &params);
    let exact = Als::train(&matrix, &params);
    let bundle = RecsBundle {
        users: data.users.iter().cloned().collect(),
        items: data.items.iter().cloned().collect(),
        model: TrainedModel::Als(als),
        popularity: Popularity::train(
            &data.interactions,
            data.n_items(),
            &PopularityParams::default(),
        ),
        neighbours: ItemKnn::train(&matrix, &ItemKnnParams::default()),
        content: None,
        embeddings: None,
        report: TrainReport {
            trained_at: 0,
            users: data.n_users(),
            items: data.n_items(),
            interactions: data.interactions.len(),
            chosen: ModelParams::Als(params.clone()),
            candidates: Vec::new(),
            validation: Vec::new(),
            k: 10,
            seconds: 0.0,
        },
    };
    let ids: Vec<ItemId> = bundle.items.clone();
    let recommender =
        Recommender::new(bundle, 1, data.catalogue.clone(), EventWeights::default()).unwrap();
    let mut overlap = 0;
    let users = 50;
    for u in 0..users {
        let user = UserId(format!("u{u}"));
        let history: Vec<Event> = events.iter().filter(|e| e.user == user).cloned().collect();
        let served = recommender.recommend(&history, 10, &ItemFilter::default());
        assert_eq!(served.len(), 10);
        // Exact: every item scored with the same folded-in factors, seen items left out.
        let mut seen: Vec<u32> = history
            .iter()
            .map(|e| ids.iter().position(|i| *i == e.item).unwrap() as u32)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        let weights: Vec<f32> = seen
            .iter()
            .map(|&i| history.iter().filter(|e| e.item == ids[i as usize]).count() as f32 * 4.0)
            .collect();
        let mut scores = vec![0f32; ids.len()];
        exact.score(
            None,
            History {
                items: &seen,
                weights: &weights,
            },
            &mut scores,
        );
        let truth = top_k(
            scores
                .iter()
                .enumerate()
                .map(|(i, &s)| (i as u32, s))
                .filter(|(i, _)| seen.binary_search(i).is_err()),
            10,
        );
        let truth: Vec<&ItemId> = truth.iter().map(|&(i, _)| &ids[i as usize]).collect();
        assert!(served
            .iter()
            .all(|r| !history.iter().any(|e| e.item == r.item)));
        overlap += served.iter().filter(|r| truth.contains(&&r.item)).count();
    }
    let recall = overlap as f64 / (users * 10) as f64;
    assert!(recall >= 0.9, "recall@10 against exact scoring: {recall}");

    // Filters hold through the graph too.
    let user = UserId("u0".into());
    let history: Vec<Event> = events.iter().filter(|e| e.user == user).cloned().collect();
    // The same history again comes from the folded-factor cache and answers the same; a history
    // that changed is folded anew.
    let first = recommender.recommend(&history, 10, &ItemFilter::default());
    assert_eq!(
        recommender.recommend(&history, 10, &ItemFilter::default()),
        first
    );
    let mut longer = history.clone();
    longer.push(Event {
        id: "extra".into(),
        item: first[0].item.clone(),
        ..history[0].clone()
    });
    let after = recommender.recommend(&longer, 10, &ItemFilter::default());
    assert!(
        after.iter().all(|r| r.item != first[0].item),
        "the new event's item is seen"
    );
    let filter = ItemFilter {
        category: Some("g7".into()),
        ..Default::default()
    };
    let served = recommender.recommend(&history, 5, &filter);
    assert_eq!(served.len(), 5);
    for r in served {
        let n: usize = r.item.0[1..].parse().unwrap();
        assert_eq!(n % 300, 7);
    }
}
