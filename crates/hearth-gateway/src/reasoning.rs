//! Reasoning models think before they answer: DeepSeek-R1 and its distills, Qwen3, QwQ, GLM,
//! MiniMax and Kimi's thinking models between `<think>` and `</think>` (the template often
//! opens the block in the prompt), Magistral between `[THINK]` and `[/THINK]`, Command R7B
//! between `<|START_THINKING|>` and `<|END_THINKING|>`, gpt-oss in its harmony `analysis`
//! channel. The thought goes to `reasoning_content`, never into the answer's `content`;
//! [`ReasoningSplit`] separates the two as the answer streams.

use hearth_infer::llm::ChatTemplate;

use crate::tool_syntax::held_tail;

/// The thinking-block markers of the families that write one, as (open, close).
const BLOCKS: [(&str, &str); 3] = [
    ("<think>", "</think>"),
    ("[THINK]", "[/THINK]"),
    ("<|START_THINKING|>", "<|END_THINKING|>"),
];

/// How a model sets its reasoning apart from its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reasoning {
    /// A thinking block; `open`: the prompt already opened it (the answer starts inside it).
    Block {
        open: bool,
        start: &'static str,
        end: &'static str,
    },
    /// gpt-oss's harmony channels: `analysis` is reasoning, `final` the answer; a
    /// `commentary` message addressed to a function is a tool call, handed on as written.
    Harmony,
}

impl Reasoning {
    /// The reasoning syntax of a model with `template`, for an answer that follows `prompt`
    /// (the rendered prompt). `None`: the model does not reason in text of its own.
    pub fn of(template: &ChatTemplate, prompt: &str) -> Option<Reasoning> {
        let source = template.source();
        if source.contains("<|channel|>") && source.contains("analysis") {
            return Some(Reasoning::Harmony);
        }
        let (start, end) = BLOCKS.into_iter().find(|(open, _)| source.contains(open))?;
        let tail = prompt.trim_end();
        Some(Reasoning::Block {
            open: tail.ends_with(start),
            start,
            end,
        })
    }

    /// Control tokens that must keep their text for the split to see them.
    pub fn markers(&self) -> Vec<String> {
        match self {
            Reasoning::Block { start, end, .. } => vec![start.to_string(), end.to_string()],
            Reasoning::Harmony => ["<|channel|>", "<|message|>", "<|end|>", "<|start|>"]
                .map(String::from)
                .to_vec(),
        }
    }

    /// The text that ends the reasoning: an answer's constraint starts after it.
    pub fn end(&self) -> &'static str {
        match self {
            Reasoning::Block { end, .. } => end,
            Reasoning::Harmony => "<|channel|>final<|message|>",
        }
    }

    /// Whether the answer starts inside the reasoning (the prompt opened it).
    pub fn opened_in_prompt(&self) -> bool {
        matches!(self, Reasoning::Block { open: true, .. })
    }
}

/// What one piece of an answer holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Piece {
    pub reasoning: String,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: the answer may still open a thinking block.
    Start,
    Reasoning,
    /// Just past the end of the reasoning: the whitespace before the answer is dropped.
    AfterReasoning,
    Content,
    /// Harmony: inside a message header (between `<|channel|>` and `<|message|>`).
    Header,
}

/// Splits an answer, piece by piece, into reasoning and content.
#[derive(Debug)]
pub struct ReasoningSplit {
    reasoning: Option<Reasoning>,
    state: State,
    held: String,
    /// Harmony: where the current message goes.
    channel_is_reasoning: bool,
    /// The reasoning seen so far (for counting its tokens).
    pub thought: String,
}

impl ReasoningSplit {
    pub fn new(reasoning: Option<Reasoning>) -> Self {
        let state = match &reasoning {
            None => State::Content,
            Some(r) if r.opened_in_prompt() => State::Reasoning,
            Some(_) => State::Start,
        };
        ReasoningSplit {
            reasoning,
            state,
            held: String::new(),
            channel_is_reasoning: false,
            thought: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Piece {
        let mut piece = Piece::default();
        if self.state == State::Content && !self.is_harmony() {
            piece.content.push_str(text);
            return piece;
        }
        self.held.push_str(text);
        match self.reasoning.clone() {
            Some(Reasoning::Block { start, end, .. }) => self.block(start, end, &mut piece),
            Some(Reasoning::Harmony) => self.harmony(&mut piece),
            None => piece.content = std::mem::take(&mut self.held),
        }
        self.thought.push_str(&piece.reasoning);
        piece
    }

    fn is_harmony(&self) -> bool {
        self.reasoning == Some(Reasoning::Harmony)
    }

    fn block(&mut self, start: &str, end: &str, piece: &mut Piece) {
        loop {
            match self.state {
                State::Start => {
                    let t = self.held.trim_start();
                    if let Some(rest) = t.strip_prefix(start) {
                        self.held = rest.to_owned();
                        self.state = State::Reasoning;
                    } else if start.starts_with(t) {
                        return; // may still open the block
                    } else {
                        self.state = State::Content;
                    }
                }
                State::Reasoning => match self.held.find(end) {
                    Some(at) => {
                        piece.reasoning.push_str(&self.held[..at]);
                        self.held.drain(..at + end.len());
                        self.state = State::AfterReasoning;
                    }
                    None => {
                        let keep = held_tail(&self.held, end);
                        let cut = self.held.len() - keep;
                        piece.reasoning.push_str(&self.held[..cut]);
                        self.held.drain(..cut);
                        return;
                    }
                },
                State::AfterReasoning => {
                    let t = self.held.trim_start();
                    if t.is_empty() {
                        self.held.clear();
                        return;
                    }
                    self.held = t.to_owned();
                    self.state = State::Content;
                }
                State::Content | State::Header => {
                    piece.content.push_str(&std::mem::take(&mut self.held));
                    return;
                }
            }
        }
    }

    /// Harmony: `<|channel|>NAME [to=..] [<|constrain|>..]<|message|>BODY<|end|>`, messages
    /// joined by `<|start|>assistant`. Text outside any message is content.
    fn harmony(&mut self, piece: &mut Piece) {
        const CHANNEL: &str = "<|channel|>";
        const MESSAGE: &str = "<|message|>";
        const END: &str = "<|end|>";
        const START: &str = "<|start|>assistant";
        loop {
            match self.state {
                State::Start | State::AfterReasoning => {
                    let t = self.held.trim_start();
                    if let Some(rest) = t.strip_prefix(START) {
                        self.held = rest.to_owned();
                    } else if let Some(rest) = t.strip_prefix(CHANNEL) {
                        self.held = rest.to_owned();
                        self.state = State::Header;
                    } else if t.is_empty() || CHANNEL.starts_with(t) || START.starts_with(t) {
                        return;
                    } else {
                        self.state = State::Content;
                    }
                }
                State::Header => {
                    let Some(at) = self.held.find(MESSAGE) else {
                        return;
                    };
                    let header = self.held[..at].to_owned();
                    if header.contains("to=") {
                        // A tool call: handed on whole, for the call reader.
                        piece.content.push_str(&format!("{CHANNEL}{}", self.held));
                        self.held.clear();
                        self.state = State::Content;
                        return;
                    }
                    self.channel_is_reasoning = header.trim() != "final";
                    self.held.drain(..at + MESSAGE.len());
                    self.state = State::Reasoning;
                }
                State::Reasoning => {
                    let (body, done) = match self.held.find(END) {
                        Some(at) => (self.held[..at].to_owned(), Some(at)),
                        None => {
                            let keep = held_tail(&self.held, END);
                            (self.held[..self.held.len() - keep].to_owned(), None)
                        }
                    };
                    if self.channel_is_reasoning {
                        piece.reasoning.push_str(&body);
                    } else {
                        piece.content.push_str(&body);
                    }
                    match done {
                        Some(at) => {
                            self.held.drain(..at + END.len());
                            self.state = State::AfterReasoning;
                        }
                        None => {
                            self.held.drain(..body.len());
                            return;
                        }
                    }
                }
                State::Content => {
                    piece.content.push_str(&std::mem::take(&mut self.held));
                    return;
                }
            }
        }
    }

    /// What is held at the end: a block cut short is reasoning; anything else is content.
    pub fn finish(&mut self) -> Piece {
        let held = std::mem::take(&mut self.held);
        let mut piece = Piece::default();
        match self.state {
            State::Reasoning if self.is_harmony() && !self.channel_is_reasoning => {
                piece.content = held
            }
            State::Reasoning => piece.reasoning = held,
            State::AfterReasoning => {}
            State::Header => {}
            State::Start | State::Content => piece.content = held,
        }
        self.thought.push_str(&piece.reasoning);
        piece
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(open: bool) -> Reasoning {
        Reasoning::Block {
            open,
            start: "<think>",
            end: "</think>",
        }
    }

    /// Feeds `answer` in pieces of `size` characters; returns (reasoning, content).
    fn split(reasoning: Reasoning, answer: &str, size: usize) -> (String, String) {
        let mut split = ReasoningSplit::new(Some(reasoning));
        let (mut r, mut c) = (String::new(), String::new());
        let chars: Vec<char> = answer.chars().collect();
        for chunk in chars.chunks(size) {
            let p = split.push(&chunk.iter().collect::<String>());
            r.push_str(&p.reasoning);
            c.push_str(&p.content);
        }
        let p = split.finish();
        r.push_str(&p.reasoning);
        c.push_str(&p.content);
        assert_eq!(split.thought, r);
        (r, c)
    }

    // Recorded shapes of real reasoning models' answers (DeepSeek-R1 distills and QwQ answer
    // inside the block their template opened; Qwen3 opens it itself; gpt-oss in channels).
    const R1: &str = "Okay, the user wants the capital of France.\nIt is Paris.\n</think>\n\nThe capital of France is **Paris**.";
    const QWEN3: &str = "<think>\nThe user greets me. I should greet back.\n</think>\n\nHello! How can I help you today?";
    const HARMONY: &str = "<|channel|>analysis<|message|>User asks for 2+2. Simple: 4.<|end|><|start|>assistant<|channel|>final<|message|>2 + 2 = 4.";

    #[test]
    fn reasoning_and_answer_come_apart_whole_and_in_small_pieces() {
        for size in [1, 2, 3, 1000] {
            let (r, c) = split(block(true), R1, size);
            assert_eq!(
                r, "Okay, the user wants the capital of France.\nIt is Paris.\n",
                "{size}"
            );
            assert_eq!(c, "The capital of France is **Paris**.", "{size}");

            let (r, c) = split(block(false), QWEN3, size);
            assert_eq!(r, "\nThe user greets me. I should greet back.\n", "{size}");
            assert_eq!(c, "Hello! How can I help you today?", "{size}");

            let (r, c) = split(Reasoning::Harmony, HARMONY, size);
            assert_eq!(r, "User asks for 2+2. Simple: 4.", "{size}");
            assert_eq!(c, "2 + 2 = 4.", "{size}");
        }
    }

    #[test]
    fn an_answer_without_a_block_is_all_content_and_a_cut_thought_is_all_reasoning() {
        for size in [1, 3, 1000] {
            // The model may open a block but does not: nothing is lost or moved.
            let (r, c) = split(
                block(false),
                "  Paris is the capital. <think> is a tag.",
                size,
            );
            assert_eq!(
                (r.as_str(), c.as_str()),
                ("", "  Paris is the capital. <think> is a tag.")
            );
            // max_tokens ran out while thinking: no answer, only the thought.
            let (r, c) = split(block(true), "Let me think about </thi", size);
            assert_eq!((r.as_str(), c.as_str()), ("Let me think about </thi", ""));
        }
    }

    #[test]
    fn a_harmony_tool_call_is_handed_on_as_written() {
        let answer = "<|channel|>analysis<|message|>Need the order.<|end|><|start|>assistant<|channel|>commentary to=functions.get_order <|constrain|>json<|message|>{\"order_id\": \"A-1\"}";
        for size in [1, 2, 1000] {
            let (r, c) = split(Reasoning::Harmony, answer, size);
            assert_eq!(r, "Need the order.");
            assert_eq!(
                c,
                "<|channel|>commentary to=functions.get_order <|constrain|>json<|message|>{\"order_id\": \"A-1\"}"
            );
            let calls =
                crate::tool_syntax::split(crate::tool_syntax::ToolSyntax::Harmony, &c, &|_| None)
                    .unwrap()
                    .calls;
            assert_eq!(calls[0].name, "get_order");
        }
    }

    #[test]
    fn the_syntax_comes_from_the_template_and_the_prompt() {
        let template = |src: &str| ChatTemplate::new(Some(src), "", "").unwrap();
        let qwq = template("{{ '<|im_start|>assistant\\n<think>\\n' }}");
        assert_eq!(
            Reasoning::of(&qwq, "<|im_start|>assistant\n<think>\n"),
            Some(block(true))
        );
        // Thinking switched off: the prompt closed the block.
        assert_eq!(
            Reasoning::of(&qwq, "<|im_start|>assistant\n<think>\n\n</think>\n\n"),
            Some(block(false))
        );
        assert_eq!(Reasoning::of(&template("{{ 'plain' }}"), "plain"), None);
    }
}
