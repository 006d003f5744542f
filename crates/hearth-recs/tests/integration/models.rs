//! Model logic on small synthetic data whose right answers are known.

use hearth_recs::data::Interaction;
use hearth_recs::eval::{split, Protocol};
use hearth_recs::models::*;
use hearth_recs::sparse::Csr;

/// Two taste groups: users 0..10 use items 0..6, users 10..20 use items 6..12, each user all
/// but one item of their group (a different one per user).
fn two_groups() -> Csr {
    let mut t = Vec::new();
    for u in 0..20u32 {
        let base = if u < 10 { 0 } else { 6 };
        for i in 0..6u32 {
            if i != u % 6 {
                t.push((u, base + i, 1.0));
            }
        }
    }
    Csr::from_triplets(20, 12, &t)
}

fn ranked(scorer: &dyn Scorer, m: &Csr, user: usize) -> Vec<u32> {
    let (items, weights) = m.row(user);
    let mut scores = vec![0f32; m.cols];
    scorer.score(Some(user as u32), History { items, weights }, &mut scores);
    let mut order: Vec<u32> = (0..m.cols as u32).filter(|i| !items.contains(i)).collect();
    order.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]));
    order
}

#[test]
fn every_collaborative_model_recommends_the_missing_item_of_the_users_group() {
    let m = two_groups();
    let models: Vec<(&str, Box<dyn Scorer>)> = vec![
        (
            "item-knn",
            Box::new(ItemKnn::train(&m, &ItemKnnParams::default())),
        ),
        (
            "ease",
            Box::new(Ease::train(&m, &EaseParams { lambda: 1.0 }).unwrap()),
        ),
        (
            "als",
            Box::new(Als::train(
                &m,
                &AlsParams {
                    factors: 4,
                    regularization: 0.1,
                    alpha: 4.0,
                    ..AlsParams::default()
                },
            )),
        ),
    ];
    for (name, model) in &models {
        for user in [0usize, 3, 10, 17] {
            let missing = if user < 10 {
                user as u32 % 6
            } else {
                6 + user as u32 % 6
            };
            assert_eq!(
                ranked(model.as_ref(), &m, user)[0],
                missing,
                "{name}, user {user}"
            );
        }
    }
}

#[test]
fn als_folds_in_a_visitor_like_a_known_user() {
    let m = two_groups();
    let als = Als::train(
        &m,
        &AlsParams {
            factors: 4,
            regularization: 0.1,
            alpha: 4.0,
            ..AlsParams::default()
        },
    );
    // A visitor who used three items of the second group.
    let items = [7u32, 8, 9];
    let weights = [1.0f32; 3];
    let mut scores = vec![0f32; 12];
    als.score(
        None,
        History {
            items: &items,
            weights: &weights,
        },
        &mut scores,
    );
    let best_first_group = scores[..6].iter().copied().fold(f32::MIN, f32::max);
    for i in [6usize, 10, 11] {
        assert!(scores[i] > best_first_group, "item {i}: {scores:?}");
    }
}

#[test]
fn item_knn_similarity_is_cosine() {
    // Item 0: users {0,1}; item 1: users {0,1,2,3}; item 2: user {3}.
    let m = Csr::from_triplets(
        4,
        3,
        &[
            (0, 0, 1.0),
            (1, 0, 1.0),
            (0, 1, 1.0),
            (1, 1, 1.0),
            (2, 1, 1.0),
            (3, 1, 1.0),
            (3, 2, 1.0),
        ],
    );
    let knn = ItemKnn::train(
        &m,
        &ItemKnnParams {
            neighbours: 5,
            shrink: 0.0,
        },
    );
    let sim = knn.similar(0);
    assert_eq!(sim.len(), 1);
    assert_eq!(sim[0].0, 1);
    assert!((sim[0].1 - 2.0 / (2f32 * 4.0).sqrt()).abs() < 1e-6);
    assert_eq!(knn.similar(1)[0].0, 0, "best neighbour first");
}

#[test]
fn ease_weights_solve_the_closed_form() {
    // B[j][i] = −P[j][i] / P[i][i] with P = (XᵀX + λI)⁻¹, computed here by cofactors.
    let m = Csr::from_triplets(
        3,
        3,
        &[
            (0, 0, 1.0),
            (0, 1, 1.0),
            (1, 1, 1.0),
            (1, 2, 1.0),
            (2, 0, 1.0),
        ],
    );
    let lambda = 0.5f64;
    let g = [
        [2.0 + lambda, 1.0, 0.0],
        [1.0, 2.0 + lambda, 1.0],
        [0.0, 1.0, 1.0 + lambda],
    ];
    // Inverse of a 3×3 by cofactors.
    let det = g[0][0] * (g[1][1] * g[2][2] - g[1][2] * g[2][1])
        - g[0][1] * (g[1][0] * g[2][2] - g[1][2] * g[2][0])
        + g[0][2] * (g[1][0] * g[2][1] - g[1][1] * g[2][0]);
    let cof = |r: usize, c: usize| {
        let rows: Vec<usize> = (0..3).filter(|&x| x != r).collect();
        let cols: Vec<usize> = (0..3).filter(|&x| x != c).collect();
        let minor =
            g[rows[0]][cols[0]] * g[rows[1]][cols[1]] - g[rows[0]][cols[1]] * g[rows[1]][cols[0]];
        if (r + c).is_multiple_of(2) {
            minor
        } else {
            -minor
        }
    };
    let p = |i: usize, j: usize| cof(j, i) / det;
    let ease = Ease::train(
        &m,
        &EaseParams {
            lambda: lambda as f32,
        },
    )
    .unwrap();
    // A history of one item j scores item i with B[j][i] = −P[j][i]/P[i][i].
    for j in 0..3u32 {
        let mut scores = vec![0f32; 3];
        ease.score(
            None,
            History {
                items: &[j],
                weights: &[1.0],
            },
            &mut scores,
        );
        for (i, &score) in scores.iter().enumerate() {
            let expected = if i == j as usize {
                0.0
            } else {
                -p(j as usize, i) / p(i, i)
            };
            assert!(
                (score as f64 - expected).abs() < 1e-4,
                "B[{j}][{i}] = {score} vs {expected}"
            );
        }
    }
}

#[test]
fn popularity_decay_favours_recent_interactions() {
    let day = 86_400;
    let interactions = [
        Interaction {
            user: 0,
            item: 0,
            weight: 1.0,
            timestamp: 0,
        },
        Interaction {
            user: 1,
            item: 0,
            weight: 1.0,
            timestamp: 0,
        },
        Interaction {
            user: 2,
            item: 1,
            weight: 1.0,
            timestamp: 100 * day,
        },
    ];
    let plain = Popularity::train(
        &interactions,
        2,
        &PopularityParams {
            half_life_days: None,
        },
    );
    assert!(plain.scores()[0] > plain.scores()[1]);
    let decayed = Popularity::train(
        &interactions,
        2,
        &PopularityParams {
            half_life_days: Some(10.0),
        },
    );
    assert!(decayed.scores()[1] > decayed.scores()[0]);
    assert!((decayed.scores()[0] - 2.0 * 0.5f32.powi(10)).abs() < 1e-6);
}

#[test]
fn splits_hold_out_a_fifth_of_each_user_deterministically() {
    let mut interactions = Vec::new();
    for user in 0..30u32 {
        for k in 0..(user % 7 + 1) * 5 {
            interactions.push(Interaction {
                user,
                item: k,
                weight: 1.0,
                timestamp: (k as i64 * 37) % 11,
            });
        }
    }
    interactions.sort_by_key(|i| (i.user, i.timestamp, i.item));
    let (train, test) = split(&interactions, Protocol::Random, 0.2, 42);
    assert_eq!(train.len() + test.len(), interactions.len());
    for user in 0..30u32 {
        let n = interactions.iter().filter(|i| i.user == user).count();
        let held = test.iter().filter(|i| i.user == user).count();
        assert_eq!(held, (n as f64 * 0.2).round() as usize, "user {user}");
        for t in test.iter().filter(|i| i.user == user) {
            assert!(!train.iter().any(|r| r.user == user && r.item == t.item));
        }
    }
    assert_eq!(
        split(&interactions, Protocol::Random, 0.2, 42),
        (train.clone(), test.clone())
    );
    assert_ne!(split(&interactions, Protocol::Random, 0.2, 7).1, test);

    let (train, test) = split(&interactions, Protocol::Temporal, 0.2, 42);
    for t in &test {
        let latest_train = train
            .iter()
            .filter(|r| r.user == t.user)
            .map(|r| r.timestamp)
            .max()
            .unwrap();
        assert!(t.timestamp >= latest_train);
    }
}
