//! The shopping assistant: a wish in plain language → constraints read by the local LLM
//! (schema-constrained JSON) → catalogue search, personalised by the shopper's history → a
//! short answer written by the LLM under a grammar that lets it name only the items found.
//! Every named item is checked against the candidates before the answer is reported.

use std::sync::Arc;

use hearth_gateway::{ChatEvent, Constraint, Gateway};
use hearth_types::{ChatCompletionRequest, ChatMessage, SamplingFields, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::data::{Event, ItemId};
use crate::error::RecsError;
use crate::models::{dot, ItemVectors};
use crate::serve::{ItemFilter, Recommender};

/// What the shopper asked for, as the model read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Wish {
    pub category: Option<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    /// Words an item must mention (title, description, categories or tags).
    #[serde(default)]
    pub must_have: Vec<String>,
}

/// An item offered to the model (and to the client).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Suggestion {
    pub item: ItemId,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    pub reason: String,
}

/// One event of an assistant answer, in order: constraints, items, deltas, done (or error).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AssistantEvent {
    /// The constraints the model read; `relaxed` when they matched nothing and some were
    /// dropped (must-have words first, then the model's category and prices).
    Constraints { wish: Wish, relaxed: bool },
    /// The catalogue items the answer may name.
    Items { items: Vec<Suggestion> },
    /// Text of the answer as it is generated.
    Delta { text: String },
    /// The items the answer named (all checked against the catalogue).
    Done { items: Vec<ItemId>, usage: Usage },
}

pub struct AssistRequest {
    pub wish: String,
    /// The shopper's events (empty for a visitor).
    pub history: Vec<Event>,
    /// Filters the client set itself; they win over what the model read.
    pub filter: ItemFilter,
    /// Items to offer the model (it names up to three).
    pub candidates: usize,
    /// A second stage for the catalogue search (none: the hybrid ranking alone).
    pub rerank: Option<hearth_gateway::rerank::RerankStage>,
}

/// The JSON schema the model's reading of a wish must follow; the category is one of the
/// catalogue's own (or null).
pub fn wish_schema(categories: &[String]) -> Value {
    let category = if categories.is_empty() {
        json!({"type": "null"})
    } else {
        // null first: a small model tends to take the first option it is offered, and no
        // category is a safer guess than a wrong one.
        json!({"anyOf": [{"type": "null"}, {"enum": categories}]})
    };
    json!({
        "type": "object",
        "properties": {
            "category": category,
            "min_price": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]},
            "max_price": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]},
            "must_have": {
                "type": "array",
                "items": {"type": "string", "minLength": 2, "maxLength": 24},
                "maxItems": 3
            }
        },
        "required": ["category", "min_price", "max_price", "must_have"],
        "additionalProperties": false
    })
}

fn wish_messages(wish: &str, categories: &[String]) -> Vec<ChatMessage> {
    let shown: Vec<&str> = categories.iter().take(60).map(String::as_str).collect();
    vec![
        ChatMessage::new(
            "system",
            format!(
                "You read a shopper's wish and return JSON with the category (one of: {}; or \
                 null), min_price and max_price in the shop's currency (or null), and \
                 must_have: up to three words the item must mention. Use null and [] when the \
                 wish does not say.",
                shown.join(", ")
            ),
        ),
        ChatMessage::new("user", "something with dogs, under 15"),
        ChatMessage::new(
            "assistant",
            r#"{"category":null,"min_price":null,"max_price":15,"must_have":["dogs"]}"#,
        ),
        ChatMessage::new("user", wish),
    ]
}

/// What the answer may name: `- ` + one of these + `: ` + a reason.
fn label(s: &Suggestion) -> String {
    format!("[{}] {}", s.item.0, s.title)
}

/// The Lark grammar of an answer: one line of introduction (not a list line), then one to
/// three lines that
/// each name a different candidate exactly (by id and title) with a short reason, so no item
/// can be named twice. Each line is one lexeme (`L0`, `L1` …), and the choices form a tree
/// (`picks` the first line, `r0` what may follow `L0`, `r0_1` what may follow `L0 L1`): the
/// parser sees whole lines and at most one choice per candidate at a time, which keeps each
/// token's mask bounded with large vocabularies (Qwen's 151k tokens overran llguidance's
/// item limit when every ordered choice was an alternative of its own).
pub fn answer_grammar(items: &[Suggestion]) -> String {
    let n = items.len();
    let choose = |taken: &[usize], next: &dyn Fn(usize) -> String| {
        (0..n)
            .filter(|i| !taken.contains(i))
            .map(next)
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut grammar = format!(
        "start: INTRO picks\npicks: {}\n",
        choose(&[], &|a| if n > 1 {
            format!("L{a} r{a}?")
        } else {
            format!("L{a}")
        })
    );
    for a in 0..n {
        if n > 1 {
            let second = choose(&[a], &|b| {
                if n > 2 {
                    format!("L{b} r{a}_{b}?")
                } else {
                    format!("L{b}")
                }
            });
            grammar.push_str(&format!("r{a}: {second}\n"));
        }
        for b in (0..n).filter(|&b| b != a && n > 2) {
            let third = choose(&[a, b], &|c| format!("L{c}"));
            grammar.push_str(&format!("r{a}_{b}: {third}\n"));
        }
    }
    for (i, s) in items.iter().enumerate() {
        let name = serde_json::to_string(&label(s)).expect("a string");
        grammar.push_str(&format!("L{i}: \"- \" {name} \": \" REASON \"\\n\"\n"));
    }
    // The introduction is no list line: it may not start like one (`- `), nor name an id.
    grammar
        .push_str("INTRO: /[^\\n\\[\\]\\- \\t][^\\n\\[\\]]{7,159}\\n/\nREASON: /[^\\n]{3,100}/\n");
    grammar
}

fn answer_messages(wish: &str, items: &[Suggestion]) -> Vec<ChatMessage> {
    let listing: Vec<String> = items
        .iter()
        .map(|s| match s.price {
            Some(p) => format!("- {} (price {p})", label(s)),
            None => format!("- {}", label(s)),
        })
        .collect();
    vec![
        ChatMessage::new(
            "system",
            "You are a shop's assistant. Answer in one friendly sentence, then list the best \
             one to three items from the catalogue list, one per line as `- [id] title: why it \
             fits`. Name only items from the list.",
        ),
        ChatMessage::new(
            "user",
            format!(
                "Wish: {wish}\nCatalogue items that match:\n{}",
                listing.join("\n")
            ),
        ),
    ]
}

/// The items an answer names, in order; a line that names anything else is an error.
pub fn named_items(answer: &str, items: &[Suggestion]) -> Result<Vec<ItemId>, RecsError> {
    let mut named: Vec<ItemId> = Vec::new();
    for line in answer.lines().filter(|l| l.starts_with("- ")) {
        let rest = &line[2..];
        let found = items
            .iter()
            .filter(|s| rest.starts_with(&format!("{}:", label(s))))
            .max_by_key(|s| label(s).len())
            .ok_or_else(|| {
                RecsError::Assistant(format!(
                    "the answer names an item not in the catalogue: {line}"
                ))
            })?;
        if !named.contains(&found.item) {
            named.push(found.item.clone());
        }
    }
    Ok(named)
}

fn request(model: &str, messages: Vec<ChatMessage>, max_tokens: u32) -> ChatCompletionRequest {
    let sampling = SamplingFields {
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        ..Default::default()
    };
    ChatCompletionRequest::streaming(model, messages, sampling)
}

/// Reads the wish with the model. A reading that does not parse (cut by the token limit)
/// counts as no constraints: the wish's own words still drive the search.
async fn read_wish(
    gateway: &Gateway,
    model: &str,
    wish: &str,
    categories: &[String],
) -> Result<(Wish, Usage), RecsError> {
    let stream = gateway
        .chat_constrained(
            &request(model, wish_messages(wish, categories), 160),
            Some(Constraint::JsonSchema(wish_schema(categories))),
        )
        .await?;
    let (message, _, usage, _) = stream.collect().await?;
    let text = message.content.unwrap_or_default();
    let mut read: Wish = serde_json::from_str(&text).unwrap_or_default();
    read.must_have.retain(|w| !w.trim().is_empty());
    if read
        .min_price
        .zip(read.max_price)
        .is_some_and(|(lo, hi)| lo > hi)
    {
        (read.min_price, read.max_price) = (read.max_price, read.min_price);
    }
    Ok((read, usage))
}

/// Drops prices from a wish with no number in it and must-have words the wish does not
/// contain: a small model invents both.
pub fn keep_what_was_said(wish: &mut Wish, said: &str) {
    if !said.chars().any(|c| c.is_ascii_digit()) {
        (wish.min_price, wish.max_price) = (None, None);
    }
    let said = said.to_lowercase();
    wish.must_have.retain(|w| said.contains(&w.to_lowercase()));
}

fn mentions(recommender: &Recommender, item: &ItemId, word: &str) -> bool {
    let word = word.to_lowercase();
    recommender
        .item(item)
        .is_some_and(|i| i.text().to_lowercase().contains(&word))
}

/// Runs one assistant turn, sending its events to `events` (a closed receiver stops it).
pub async fn assist(
    gateway: &Gateway,
    model: &str,
    recommender: Arc<Recommender>,
    request_in: AssistRequest,
    events: mpsc::Sender<AssistantEvent>,
) -> Result<(), RecsError> {
    if request_in.wish.trim().is_empty() {
        return Err(RecsError::InvalidParameter {
            param: "wish".into(),
            message: "must not be empty".into(),
        });
    }
    let categories = recommender.categories();
    let (mut wish, read_usage) = read_wish(gateway, model, &request_in.wish, categories).await?;
    // What the shopper did not say is not applied: no number, no price; a must-have word must
    // be in the wish; a category must be among the three closest to the wish in meaning.
    keep_what_was_said(&mut wish, &request_in.wish);
    if let (Some(category), Some(embedder)) = (&wish.category, recommender.search_model()) {
        if categories.len() <= 200 {
            let mut texts = vec![request_in.wish.clone()];
            texts.extend(categories.iter().cloned());
            // Unit vectors: the wish's dot product with each category is their cosine.
            let vectors = ItemVectors::new(gateway.embed_texts(embedder, texts).await?);
            let mut ranked: Vec<(f32, &String)> = (1..vectors.len() as u32)
                .map(|i| dot(vectors.get(0), vectors.get(i)))
                .zip(categories)
                .collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
            if !ranked
                .iter()
                .take(3)
                .any(|(_, c)| c.eq_ignore_ascii_case(category))
            {
                wish.category = None;
            }
        }
    }
    let client = &request_in.filter;
    let read = ItemFilter {
        category: client.category.clone().or_else(|| wish.category.clone()),
        min_price: client.min_price.or(wish.min_price),
        max_price: client.max_price.or(wish.max_price),
        in_stock: client.in_stock,
    };
    let query = if wish.must_have.is_empty() {
        request_in.wish.clone()
    } else {
        format!("{} {}", request_in.wish, wish.must_have.join(" "))
    };
    let vector = match recommender.search_model() {
        Some(embedder) => gateway
            .embed_texts(embedder, vec![query.clone()])
            .await?
            .pop(),
        None => None,
    };
    let n = request_in.candidates.clamp(1, 10);
    // What the model read can be wrong: when it leaves nothing, drop the must-have words, then
    // the model's category and prices. The client's own filters always hold.
    let mut relaxed = false;
    let mut chosen = Vec::new();
    let words_matter = !wish.must_have.is_empty();
    let mut tried: Vec<(&ItemFilter, bool)> = Vec::new();
    for (filter, words) in [(&read, words_matter), (&read, false), (client, false)] {
        if tried.contains(&(filter, words)) {
            continue;
        }
        tried.push((filter, words));
        let pool = recommender.search(
            &query,
            vector.as_deref(),
            &request_in.history,
            n * 4,
            filter,
        )?;
        chosen = pool
            .into_iter()
            .filter(|r| {
                !words
                    || wish
                        .must_have
                        .iter()
                        .all(|w| mentions(&recommender, &r.item, w))
            })
            .collect();
        if !chosen.is_empty() {
            break;
        }
        relaxed = true;
    }
    if chosen.is_empty() {
        // Nothing matches the words: the shopper's recommendations under their own filters.
        chosen = recommender.recommend(&request_in.history, n, client);
    } else if let Some(stage) = &request_in.rerank {
        chosen =
            crate::rerank::rerank(gateway, &recommender, stage, &request_in.wish, chosen).await?;
    }
    chosen.truncate(n);
    let items: Vec<Suggestion> = chosen
        .into_iter()
        .map(|r| Suggestion {
            price: recommender.item(&r.item).and_then(|i| i.price),
            item: r.item,
            title: r.title.replace(['\n', '\r'], " "),
            reason: r.reason,
        })
        .collect();
    let send = |event| events.send(event);
    if send(AssistantEvent::Constraints { wish, relaxed })
        .await
        .is_err()
        || send(AssistantEvent::Items {
            items: items.clone(),
        })
        .await
        .is_err()
    {
        return Ok(());
    }
    if items.is_empty() {
        let text = "Nothing in the catalogue matches that yet.".to_owned();
        let _ = send(AssistantEvent::Delta { text }).await;
        let _ = send(AssistantEvent::Done {
            items: Vec::new(),
            usage: read_usage,
        })
        .await;
        return Ok(());
    }
    let mut stream = gateway
        .chat_constrained(
            &request(model, answer_messages(&request_in.wish, &items), 400),
            Some(Constraint::Lark(answer_grammar(&items))),
        )
        .await?;
    let mut answer = String::new();
    while let Some(event) = stream.next().await {
        match event {
            ChatEvent::Delta(delta) => {
                let Some(text) = delta.content.filter(|t| !t.is_empty()) else {
                    continue;
                };
                answer.push_str(&text);
                if send(AssistantEvent::Delta { text }).await.is_err() {
                    return Ok(());
                }
            }
            ChatEvent::Finished { usage, .. } => {
                let named = named_items(&answer, &items)?;
                let usage = Usage::new(
                    read_usage.prompt_tokens + usage.prompt_tokens,
                    read_usage.completion_tokens + usage.completion_tokens,
                );
                let _ = send(AssistantEvent::Done {
                    items: named,
                    usage,
                })
                .await;
                return Ok(());
            }
            ChatEvent::Failed(e) => return Err(e.into()),
        }
    }
    Err(RecsError::Assistant(
        "the model stopped before finishing".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<Suggestion> {
        ["Toy Story (1995)", "Heat (1995)"]
            .iter()
            .enumerate()
            .map(|(i, t)| Suggestion {
                item: ItemId(format!("{}", i + 1)),
                title: (*t).to_owned(),
                price: None,
                reason: String::new(),
            })
            .collect()
    }

    #[test]
    fn named_items_are_checked_against_the_candidates() {
        let items = items();
        let answer = "Here you go\n- [2] Heat (1995): tense\n- [1] Toy Story (1995): fun\n";
        let named = named_items(answer, &items).unwrap();
        assert_eq!(named, [ItemId("2".into()), ItemId("1".into())]);
        let invented = "Here you go\n- [9] Jaws (1975): scary\n";
        assert!(matches!(
            named_items(invented, &items),
            Err(RecsError::Assistant(m)) if m.contains("Jaws")
        ));
        // A real id with a made-up title is an invention too.
        assert!(named_items("Hi\n- [1] Heat (1995): x\n", &items).is_err());
    }

    #[test]
    fn the_grammar_quotes_titles_and_lists_every_candidate() {
        let mut items = items();
        items[0].title = "A \"quoted\" title".into();
        let grammar = answer_grammar(&items);
        assert!(grammar.contains(r#""[1] A \"quoted\" title""#), "{grammar}");
        assert!(grammar.contains(r#""[2] Heat (1995)""#));
        assert!(grammar.starts_with("start: INTRO"));
    }

    #[test]
    fn the_grammar_never_names_a_candidate_twice() {
        for n in 1..=6 {
            let candidates: Vec<Suggestion> = (0..n)
                .map(|i| Suggestion {
                    item: ItemId(format!("{i}")),
                    title: format!("Film {i}"),
                    price: None,
                    reason: String::new(),
                })
                .collect();
            every_choice_of_distinct_candidates(&candidates);
        }
    }

    fn every_choice_of_distinct_candidates(items: &[Suggestion]) {
        let n = items.len();
        let grammar = answer_grammar(items);
        // The rules of the grammar, then every sequence of lines `picks` can produce.
        let rules: std::collections::HashMap<&str, Vec<Vec<&str>>> = grammar
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(name, _)| name.starts_with(|c: char| c.is_ascii_lowercase()))
            .map(|(name, body)| {
                let alternatives = body
                    .split(" | ")
                    .map(|alt| alt.split_whitespace().collect())
                    .collect();
                (name, alternatives)
            })
            .collect();
        fn expand<'a>(
            symbol: &'a str,
            rules: &std::collections::HashMap<&'a str, Vec<Vec<&'a str>>>,
        ) -> Vec<Vec<&'a str>> {
            let Some(alternatives) = rules.get(symbol) else {
                return vec![vec![symbol]];
            };
            let mut out = Vec::new();
            for alternative in alternatives {
                let mut sequences = vec![Vec::new()];
                for part in alternative {
                    let (name, optional) = match part.strip_suffix('?') {
                        Some(name) => (name, true),
                        None => (*part, false),
                    };
                    let mut next = Vec::new();
                    for prefix in &sequences {
                        if optional {
                            next.push(prefix.clone());
                        }
                        for tail in expand(name, rules) {
                            let mut joined = prefix.clone();
                            joined.extend(tail);
                            next.push(joined);
                        }
                    }
                    sequences = next;
                }
                out.extend(sequences);
            }
            out
        }
        let picks = expand("picks", &rules);
        // Every ordered choice of 1 to 3 distinct candidates, and nothing else.
        assert_eq!(picks.len(), n + n * (n - 1) + n * (n - 1) * (n - 2));
        let unique: std::collections::HashSet<&Vec<&str>> = picks.iter().collect();
        assert_eq!(unique.len(), picks.len());
        for named in &picks {
            assert!(named
                .iter()
                .all(|w| w.starts_with('L') && w[1..].parse::<usize>().is_ok()));
            let distinct: std::collections::HashSet<&&str> = named.iter().collect();
            assert!(!named.is_empty() && named.len() <= 3, "{named:?}");
            assert_eq!(distinct.len(), named.len(), "{named:?}");
        }
    }

    #[test]
    fn only_what_the_shopper_said_is_kept() {
        let mut wish = Wish {
            category: None,
            min_price: Some(10.0),
            max_price: Some(10.0),
            must_have: vec!["up_to_three_words".into(), "Dogs".into()],
        };
        keep_what_was_said(&mut wish, "cheap toys with dogs");
        assert_eq!((wish.min_price, wish.max_price), (None, None));
        assert_eq!(wish.must_have, ["Dogs"]);
        let mut wish = Wish {
            max_price: Some(15.0),
            ..Wish::default()
        };
        keep_what_was_said(&mut wish, "toys under 15");
        assert_eq!(wish.max_price, Some(15.0));
    }

    #[test]
    fn the_schema_offers_the_catalogues_categories() {
        let schema = wish_schema(&["Comedy".into(), "Drama".into()]);
        assert_eq!(
            schema["properties"]["category"]["anyOf"][1]["enum"],
            json!(["Comedy", "Drama"])
        );
        let read: Wish = serde_json::from_str(
            r#"{"category":"Comedy","min_price":null,"max_price":20,"must_have":["space"]}"#,
        )
        .unwrap();
        assert_eq!(read.max_price, Some(20.0));
        assert_eq!(read.must_have, ["space"]);
    }
}
