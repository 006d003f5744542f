//! The models on real data: MovieLens-100K (scripts/fetch-movielens.sh), all ratings as
//! implicit feedback, a per-user random 80/20 split, full ranking over unseen items.

use hearth_recs::eval::{evaluate, EvalOptions, ModelPlan, Protocol};
use hearth_recs::import::{read_all, ColumnMapping, DataFiles};
use hearth_recs::models::ModelKind;
use hearth_recs::{Dataset, Event, EventWeights, Item, User};
use hearth_testdata::movielens_dir;

fn load() -> Dataset {
    let files = DataFiles::discover(&movielens_dir()).unwrap();
    let mapping = ColumnMapping::default();
    let fail = &mut |e: &hearth_recs::import::RowError| panic!("bad row {e}");
    let (items, _) = read_all::<Item>(files.items.as_ref().unwrap(), &mapping, true, fail).unwrap();
    let (users, _) = read_all::<User>(files.users.as_ref().unwrap(), &mapping, true, fail).unwrap();
    let (events, _) =
        read_all::<Event>(files.events.as_ref().unwrap(), &mapping, true, fail).unwrap();
    assert_eq!(
        (items.len(), users.len(), events.len()),
        (1682, 943, 100_000)
    );
    Dataset::build(items, users, &events, &EventWeights::default())
}

#[test]
fn trained_models_beat_popularity_on_movielens() {
    let data = load();
    assert_eq!(
        (data.n_users(), data.n_items(), data.interactions.len()),
        (943, 1682, 100_000)
    );
    let report = evaluate(
        &data,
        None,
        &EvalOptions {
            models: [
                ModelKind::Popularity,
                ModelKind::ItemKnn,
                ModelKind::Als,
                ModelKind::Ease,
            ]
            .into_iter()
            .map(|kind| ModelPlan::defaults(kind, 42))
            .collect(),
            ..EvalOptions::search_all(Protocol::Random, 10, 42)
        },
        &(),
    )
    .unwrap();
    assert_eq!(report.users, 943);
    // A fifth of each user's ratings, rounded per user.
    assert!(
        (19_500..20_500).contains(&report.test_interactions),
        "{}",
        report.test_interactions
    );
    assert_eq!(
        report.train_interactions + report.test_interactions,
        100_000
    );
    let ndcg = |kind| {
        report
            .results
            .iter()
            .find(|r| r.model == kind)
            .unwrap()
            .metrics
            .ndcg
    };
    let popularity = ndcg(ModelKind::Popularity);
    println!("{}", report.markdown());
    assert!(
        (0.15..0.35).contains(&popularity),
        "popularity NDCG@10 {popularity}"
    );
    for kind in [ModelKind::ItemKnn, ModelKind::Als, ModelKind::Ease] {
        assert!(
            ndcg(kind) > popularity + 0.1,
            "{kind} NDCG@10 {} vs popularity {popularity}",
            ndcg(kind)
        );
    }
    assert!(
        ndcg(ModelKind::Ease) > 0.40,
        "EASE NDCG@10 {}",
        ndcg(ModelKind::Ease)
    );
}

#[test]
fn a_training_report_keeps_every_candidates_validation_figures() {
    use hearth_recs::bundle::{train_bundle, TrainOptions};
    let data = load();
    let bundle = train_bundle(
        &data,
        None,
        &TrainOptions {
            models: vec![ModelKind::ItemKnn],
            ..TrainOptions::default()
        },
        &(),
    )
    .unwrap();
    let report = &bundle.report;
    assert!(!report.candidates.is_empty());
    assert_eq!(report.validation.len(), report.candidates.len());
    for ((params, ndcg), figures) in report.candidates.iter().zip(&report.validation) {
        assert_eq!(params, &figures.params);
        assert_eq!(*ndcg, figures.metrics.ndcg);
        let m = &figures.metrics;
        // A fifth of 100,000 ratings held out spreads over nearly every user.
        assert!(m.users > 900, "{} users evaluated", m.users);
        for (name, value) in [
            ("precision", m.precision),
            ("recall", m.recall),
            ("hit rate", m.hit_rate),
            ("map", m.map),
            ("coverage", m.coverage),
        ] {
            assert!(value > 0.0 && value <= 1.0, "{name} {value}");
        }
        assert!(
            m.hit_rate >= m.precision,
            "hit rate {} < precision {}",
            m.hit_rate,
            m.precision
        );
    }
    // The report round-trips through meta.json, and an older one without the figures reads.
    let json = serde_json::to_value(report).unwrap();
    let back: hearth_recs::bundle::TrainReport = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back.validation, report.validation);
    let mut old = json;
    old.as_object_mut().unwrap().remove("validation");
    let old: hearth_recs::bundle::TrainReport = serde_json::from_value(old).unwrap();
    assert!(old.validation.is_empty());
}
