//! The knowledge base with the real all-MiniLM-L6-v2: Markdown, HTML and text documents in
//! nested directories, hybrid search, the agent's cited retrieval (with SmolLM2-135M),
//! replacing a changed file and dropping a removed one.

use hearth_gateway::{Gateway, GatewayOptions};
use hearth_infer::registry::{ModelRegistry, RegistryOptions};
use hearth_support::agent::{Agent, AgentOptions, Conversation, Entry};
use hearth_support::intents::NoProgress;
use hearth_support::kb::KnowledgeBase;
use hearth_support::tools::{ToolBox, Variables};
use hearth_testdata::models_dir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_searchable_replaced_and_dropped() {
    for url in hearth_testdata::store_urls() {
        documents_on(url).await;
    }
}

/// The whole life of a knowledge base on the store at `url` (PostgreSQL) or in the data
/// directory (SQLite, `None`).
async fn documents_on(url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let registry = ModelRegistry::open(RegistryOptions {
        data_dir: dir.path().to_owned(),
        hub_cache: dir.path().join("hub"),
    })
    .unwrap();
    registry
        .import(&models_dir().join("all-MiniLM-L6-v2"), Some("minilm"))
        .unwrap();
    registry
        .import(
            &models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"),
            Some("smollm2"),
        )
        .unwrap();
    let gateway = Gateway::new(registry, GatewayOptions::default());
    let store = hearth_store::Store::open_with(
        dir.path(),
        &hearth_store::StoreOptions {
            url,
            artifacts_dir: None,
        },
    )
    .unwrap();
    let kb = KnowledgeBase::open(store.db().clone()).unwrap();

    let docs = dir.path().join("help");
    std::fs::create_dir_all(docs.join("shipping")).unwrap();
    std::fs::write(
        docs.join("returns.md"),
        "# Returns\n\nYou can return a delivered item within 30 days of delivery.\n\n\
         ## Refunds\n\nRefunds go back to the original payment method within 5 to 7 business days; \
         gift card refunds are immediate.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("shipping/international.html"),
        "<html><body><h1>International shipping</h1><p>We ship to 40 countries. Customs duties \
         are paid by the recipient.</p></body></html>",
    )
    .unwrap();
    std::fs::write(
        docs.join("warranty.txt"),
        "Every office chair has a two-year warranty against manufacturing defects.",
    )
    .unwrap();
    std::fs::write(docs.join("image.png"), [0u8, 1, 2]).unwrap();

    let report = kb
        .add(&gateway, "minilm", std::slice::from_ref(&docs), &NoProgress)
        .await
        .unwrap();
    assert_eq!((report.added, report.updated, report.unchanged), (3, 0, 0));
    assert_eq!(kb.files().unwrap().len(), 3, "the .png is not a document");

    let index = kb.index().unwrap();
    let hits = index
        .search(&gateway, "how long until I get my money back", 2)
        .await
        .unwrap();
    assert_eq!(hits[0].title, "Returns › Refunds", "{hits:#?}");
    assert!(hits[0].id.starts_with("kb:"));
    let hits = index
        .search(&gateway, "customs fees abroad", 1)
        .await
        .unwrap();
    assert!(hits[0].source.ends_with("international.html"), "{hits:#?}");
    let hits = index
        .search(&gateway, "chair broken after a year", 1)
        .await
        .unwrap();
    assert!(hits[0].text.contains("two-year warranty"), "{hits:#?}");

    // The agent looks every customer message up first and cites what it found, whatever the
    // model then does (SmolLM2-135M here, one step).
    let tools = ToolBox::new(Vec::new(), Variables::default()).unwrap();
    let mut options = AgentOptions::new("smollm2");
    options.max_tool_rounds = 1;
    options.max_reply_tokens = 24;
    let agent = Agent {
        gateway: &gateway,
        tools: &tools,
        policy: "Answer from the help documents.",
        playbook: None,
        knowledge: Some(&index),
        options,
    };
    let mut conversation = Conversation::default();
    let outcome = agent
        .respond(&mut conversation, "How long do refunds take?", &|_| {})
        .await
        .unwrap();
    assert_eq!(
        outcome.citations[0].title, "Returns › Refunds",
        "{outcome:#?}"
    );
    assert!(matches!(&conversation.entries[1],
        Entry::ToolCall { name, result: Ok(found), .. }
            if name == "search_knowledge_base" && found[0]["text"].as_str().unwrap().contains("5 to 7 business days")));
    if !outcome.handed_over && outcome.tool_calls == 0 {
        assert!(outcome.reply.contains("Sources: [kb:"), "{outcome:#?}");
    }

    // Unchanged files are skipped; a changed one replaces its passages.
    let again = kb
        .add(&gateway, "minilm", std::slice::from_ref(&docs), &NoProgress)
        .await
        .unwrap();
    assert_eq!((again.added, again.updated, again.unchanged), (0, 0, 3));
    let before = kb.stamp().unwrap();
    std::fs::write(
        docs.join("warranty.txt"),
        "Office chairs now carry a five-year warranty.",
    )
    .unwrap();
    let changed = kb
        .add(&gateway, "minilm", std::slice::from_ref(&docs), &NoProgress)
        .await
        .unwrap();
    assert_eq!((changed.updated, changed.unchanged), (1, 2));
    assert_ne!(kb.stamp().unwrap(), before);
    let index = kb.index().unwrap();
    let hits = index.search(&gateway, "chair warranty", 5).await.unwrap();
    assert!(hits.iter().any(|h| h.text.contains("five-year")));
    assert!(
        !hits.iter().any(|h| h.text.contains("two-year")),
        "{hits:#?}"
    );

    // A deleted file is dropped on request.
    std::fs::remove_file(docs.join("shipping/international.html")).unwrap();
    let dropped = kb.drop_missing().unwrap();
    assert_eq!(dropped.len(), 1);
    assert!(dropped[0].ends_with("international.html"));
    let index = kb.index().unwrap();
    let hits = index.search(&gateway, "customs duties", 5).await.unwrap();
    assert!(!hits
        .iter()
        .any(|h| h.source.ends_with("international.html")));
}
