//! Operation cues: whether a prompt's request carries a word that names an
//! operation ("summarise", "总结", "要約", "классифицируй", ...), in the
//! languages the encoder serves most. Read by the task head only, when its
//! metadata names them (`train heads --task-cues`).
//!
//! Why: held out, a source's prompts read as the class the *other* sources
//! teach for their topic and shape (docs/EVALUATION.md, "Fourth-round hand
//! labels"), and a non-English request is judged by an embedding that
//! carries its language as much as its operation. The verb that names the
//! operation is the one signal every source and language shares; a binary
//! flag per operation lets the head learn it once, from the English
//! sources, and apply it to the same verb in Chinese or Russian.
//!
//! The word lists were written from general knowledge of each language,
//! before any measurement, and never from the evaluation-only sets; they
//! are deliberately short and common. Matching is a case-insensitive
//! substring test over the request's windows (below).

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use crate::classifier::instruction_views;

/// Names of the cue flags, in the order [`operation_cues`] returns them.
pub const CUE_NAMES: [&str; 8] = [
    "cue_summarize",
    "cue_extract",
    "cue_translate",
    "cue_classify",
    "cue_list_ideas",
    "cue_compose",
    "cue_puzzle",
    "cue_converse",
];

/// The words of each cue, lower case, in [`CUE_NAMES`] order. Each list
/// runs English, Chinese, Japanese, Korean, Russian, Spanish, Portuguese,
/// German, French, Italian.
// Kept as compact word lists: one word a line would run to 400 lines.
#[rustfmt::skip]
const CUE_WORDS: [&[&str]; 8] = [
    // summarize
    &[
        "summar", "tl;dr", "tldr", "in a nutshell", "key points", "main points", "gist",
        "condense", "总结", "總結", "概括", "摘要", "归纳", "概述", "要約", "まとめて", "要点",
        "요약", "кратко", "краткое содержание", "резюмир", "обобщи", "resumen", "resumir",
        "resume el", "resume la", "resume este", "resume esta", "resuma", "resumo", "sintetiz",
        "zusammenfass", "fasse", "kurzfassung", "résumez", "résumer", "résume ce", "résume le",
        "résume la", "en bref", "riassum", "sintesi",
    ],
    // extract
    &[
        "extract", "from the text", "from the passage", "from the article", "based on the text",
        "based on the passage", "based on the article", "according to the text",
        "according to the passage", "according to the article", "in the text", "in the passage",
        "提取", "抽取", "找出", "根据以下", "根据上文", "根据文章", "根据这段", "从以下",
        "从这段", "文中", "抽出", "本文", "文章から", "추출", "본문", "지문", "извлеки",
        "извлечь", "выпиши", "из текста", "согласно тексту", "в тексте", "extrae", "extraer",
        "según el texto", "del texto", "en el texto", "extraia", "extrair", "segundo o texto",
        "do texto", "no texto", "extrahier", "aus dem text", "laut text", "im text", "extrais",
        "extraire", "d'après le texte", "du texte", "dans le texte", "selon le texte", "estrai",
        "dal testo", "secondo il testo", "nel testo",
    ],
    // translate
    &[
        "translat", "翻译", "翻譯", "译成", "譯成", "译为", "翻訳", "訳して", "英訳", "和訳",
        "번역", "перевед", "перевод", "traduc", "traduz", "übersetz", "tradui", "tradurre",
        "traduci",
    ],
    // classify
    &[
        "classify", "classification", "categorize", "categorise", "which of the following are",
        "which of these are", "identify which", "sentiment", "true or false",
        "positive or negative", "分类", "分類", "类别", "類別", "情感", "属于哪", "判断",
        "哪些是", "カテゴリ", "判定", "분류", "카테고리", "감정", "классифиц", "категори",
        "тональност", "относится ли", "clasific", "categoriz", "sentimiento", "classifi",
        "sentimento", "klassifizier", "kategorisier", "einordnen", "ordne", "classez",
        "classer", "catégoris", "categorizz",
    ],
    // list ideas (brainstorming)
    &[
        "ideas", "suggest", "give me some", "list of", "list some", "brainstorm", "ways to",
        "tips", "names for", "options for", "建议", "列出", "列举", "几个", "想法", "点子",
        "主意", "推荐", "アイデア", "提案", "挙げて", "いくつか", "おすすめ", "아이디어", "제안",
        "추천", "몇 가지", "나열", "идеи", "идей", "предлож", "перечисл", "список",
        "несколько", "посоветуй", "советы", "sugier", "sugerenc", "lista de", "enumera", "algunas",
        "consejos", "ideias", "sugir", "sugest", "algumas", "dicas", "ideen",
        "vorschl", "eine liste", "nenne", "einige", "tipps", "idées", "suggè", "une liste", "énumère", "quelques",
        "conseils", "idee", "suggeri", "elenca", "alcuni", "consigli",
    ],
    // compose (creative writing)
    &[
        "write a", "write me", "compose", "story", "poem", "essay", "rewrite", "paraphrase",
        "lyrics", "screenplay", "blog post", "写一", "寫一", "撰写",
        "创作", "故事", "诗歌", "一首诗", "作文", "邮件", "改写", "润色", "续写", "書いて",
        "物語", "小説", "メール", "手紙", "書き直", "써 줘", "써줘", "작성", "이야기",
        "소설", "편지", "이메일", "напиши", "сочини", "рассказ", "стих", "эссе", "письмо",
        "перепиши", "escribe", "redacta", "cuento", "poema", "ensayo", "carta", "escreva",
        "redija", "conto", "redação", "schreib", "verfasse", "erzählung", "gedicht", "aufsatz",
        "écris", "rédige", "poème", "essai", "lettre", "scrivi", "racconto", "poesia", "saggio",
        "lettera",
    ],
    // puzzle (reasoning)
    &[
        "riddle", "puzzle", "brain teaser", "logic", "what comes next", "next in the sequence",
        "谜语", "谜题", "推理", "逻辑", "脑筋急转弯", "なぞなぞ", "パズル", "論理",
        "수수께끼", "퍼즐", "추론", "논리", "загадк", "головоломк", "логик", "acertijo",
        "adivinanza", "lógica", "rompecabezas", "charada", "enigma", "quebra-cabeça",
        "rätsel", "logik", "énigme", "devinette", "logique", "casse-tête", "indovinello",
        "rompicapo",
    ],
    // converse (chat, role-play)
    &[
        "hello", "how are you", "act as", "roleplay", "role-play", "pretend", "你好",
        "扮演", "聊天", "こんにちは", "ロールプレイ", "演じ", "안녕", "역할", "привет",
        "представь, что", "как дела", "hola", "actúa como", "cómo estás", "olá", "aja como",
        "hallo", "tu so, als", "wie geht", "bonjour", "agis comme", "ça va", "ciao",
        "comportati come",
    ],
];

/// Every cue word in one automaton: each pattern's cue index and whether
/// it must start a word (see [`starts_a_word`]). Built once, on first use.
struct CueMatcher {
    automaton: AhoCorasick,
    /// (cue index, must start a word), by pattern id.
    patterns: Vec<(usize, bool)>,
}

static MATCHER: LazyLock<CueMatcher> = LazyLock::new(|| {
    let mut words = Vec::new();
    let mut patterns = Vec::new();
    for (cue, list) in CUE_WORDS.iter().enumerate() {
        for word in *list {
            words.push(*word);
            patterns.push((cue, starts_a_word(word)));
        }
    }
    CueMatcher {
        // Standard semantics, as overlapping search requires: every
        // occurrence of every word is reported, so a word that is refused
        // at one place ("story" in "history") can still count elsewhere.
        automaton: AhoCorasick::new(&words).expect("the cue words build an automaton"),
        patterns,
    }
});

/// The cue flags of one prompt, in [`CUE_NAMES`] order: 1.0 where one of
/// the cue's words occurs in the request, else 0.0. A long prompt is read
/// in its instruction views only (its first and last
/// [`crate::classifier::VIEW_CHARS`] characters), where the request sits:
/// the middle of a pasted document ("the story", "the poem") would
/// otherwise name operations nobody asked for.
///
/// One pass of an Aho-Corasick automaton over the request (the crate
/// `aho-corasick`), not a scan per word: about 400 words × 8 cues.
pub fn operation_cues(text: &str) -> Vec<f32> {
    let request = request_text(text);
    let matcher = &*MATCHER;
    let mut flags = vec![0.0; CUE_NAMES.len()];
    for m in matcher.automaton.find_overlapping_iter(&request) {
        let (cue, spaced) = matcher.patterns[m.pattern().as_usize()];
        if flags[cue] == 0.0 && (!spaced || !follows_a_letter(&request, m.start())) {
            flags[cue] = 1.0;
        }
    }
    flags
}

/// The lower-cased text the cues read: the instruction views of a long
/// prompt, the whole of a short one.
fn request_text(text: &str) -> String {
    match instruction_views(text) {
        Some((head, tail)) => format!("{head}\n{tail}"),
        None => text.to_string(),
    }
    .to_lowercase()
}

/// Whether `word` is in an alphabet with spaces (Latin, Cyrillic), where a
/// match must start a word: "story" is not in "history", nor "ways to" in
/// "always to". Chinese, Japanese and Korean words match anywhere.
fn starts_a_word(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() && (c as u32) < 0x0530)
}

/// Whether the character before byte `at` of `text` is a letter.
fn follows_a_letter(text: &str, at: usize) -> bool {
    text[..at]
        .chars()
        .next_back()
        .is_some_and(char::is_alphabetic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cues(text: &str) -> Vec<&'static str> {
        CUE_NAMES
            .iter()
            .zip(operation_cues(text))
            .filter(|(_, v)| *v == 1.0)
            .map(|(n, _)| *n)
            .collect()
    }

    #[test]
    fn one_flag_per_name_and_lists_in_step() {
        assert_eq!(CUE_WORDS.len(), CUE_NAMES.len());
        assert_eq!(operation_cues("").len(), CUE_NAMES.len());
        for words in CUE_WORDS {
            // Lower case, or `to_lowercase` of the text could never match.
            assert!(words.iter().all(|w| w.to_lowercase() == *w), "{words:?}");
        }
    }

    #[test]
    fn the_same_operation_in_several_languages() {
        for text in [
            "Summarize this article in two sentences.",
            "请总结下面这段话的主要内容。",
            "次の記事を要約してください。",
            "Кратко перескажи: краткое содержание главы.",
            "Fasse den folgenden Text zusammen.",
        ] {
            assert_eq!(cues(text), vec!["cue_summarize"], "{text}");
        }
        assert_eq!(cues("把这句话翻译成英文"), vec!["cue_translate"]);
        assert_eq!(
            cues("Classez ces fruits : pomme, carotte"),
            vec!["cue_classify"]
        );
        assert!(cues("What is the capital of Peru?").is_empty());
        // Latin and Cyrillic words start a word; Chinese ones match inside.
        assert!(cues("Give me the history of Rome, as always to the point.").is_empty());
        assert_eq!(cues("请给我讲一个故事"), vec!["cue_compose"]);
    }

    /// The plain definition: a scan per word, each occurrence checked.
    fn cues_by_scanning(text: &str) -> Vec<f32> {
        let request = request_text(text);
        CUE_WORDS
            .iter()
            .map(|words| {
                f32::from(words.iter().any(|w| {
                    request
                        .match_indices(w)
                        .any(|(at, _)| !starts_a_word(w) || !follows_a_letter(&request, at))
                }))
            })
            .collect()
    }

    /// The automaton gives the plain scan's flags on every prompt in the
    /// repository's task, evaluation and written sets (the shipped heads
    /// were trained on the flags of the scan).
    #[test]
    fn the_automaton_agrees_with_the_plain_scan() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../training-data");
        let mut checked = 0;
        for dir in ["tasks", "eval", "tasks-written", "tasks-translated"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_none_or(|e| e != "jsonl") {
                    continue;
                }
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    let record: serde_json::Value = serde_json::from_str(line).unwrap();
                    let prompt = record["prompt"].as_str().unwrap();
                    assert_eq!(operation_cues(prompt), cues_by_scanning(prompt), "{prompt}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000, "only {checked} prompts");
    }

    #[test]
    fn a_long_prompt_is_read_in_its_request_windows_only() {
        let filler = "The harbour was busy that year. ".repeat(8);
        let document = format!("{filler}The story is told in a poem. {filler}");
        let text = format!("Pull the dates out of this:\n{document}\nThanks.");
        assert!(!cues(&text).contains(&"cue_compose"), "{:?}", cues(&text));
        let asked = format!("Write a poem about this:\n{document}");
        assert!(cues(&asked).contains(&"cue_compose"));
    }
}
