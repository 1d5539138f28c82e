//! The translation pairs `train heads --language-pairs` reads, and the
//! language directions they give ([`crate::language`]).
//!
//! A pair is a record with `translated_from` (the id of its original) and
//! `lang`, whose original is among the run's *training* records: so in a
//! leave-one-source-out fold the held-out source's translations (whose
//! originals are held out with it) give no direction.

use std::collections::HashMap;
use std::path::PathBuf;

use pointsman_records::Record;

use crate::embed_cache::EmbedCache;
use crate::encoder::Encoder;
use crate::error::{ClassifierError, Result};
use crate::language::{LanguageDirections, LanguageDirectionsInfo};

use super::progress::Progress;
use super::records::read_dirs_records;

/// A language needs this many pairs for its own direction: a mean offset
/// over fewer is mostly the particular prompts' noise.
pub const MIN_PAIRS_PER_LANGUAGE: usize = 10;

/// The directions from the pairs in `dirs` whose originals are in
/// `training`; an error when too few are (a wrong folder, or ids that do
/// not match).
pub fn language_directions(
    dirs: &[PathBuf],
    training: &[(String, Record)],
    encoder: &dyn Encoder,
    cache: &mut EmbedCache,
    progress: &dyn Progress,
) -> Result<(LanguageDirections, LanguageDirectionsInfo)> {
    let (records, _) = read_dirs_records(dirs)?;
    let originals: HashMap<&str, &str> = training
        .iter()
        .map(|(_, r)| (r.id.as_str(), r.prompt.as_str()))
        .collect();
    let text = |r: &Record, field: &str| {
        r.extra
            .get(field)
            .and_then(|v| v.as_str().map(String::from))
    };
    let pairs: Vec<(String, &str, &str)> = records
        .iter()
        .filter_map(|(_, r)| {
            let from = text(r, "translated_from")?;
            let lang = text(r, "lang")?;
            let original = originals.get(from.as_str())?;
            Some((lang, r.prompt.as_str(), *original))
        })
        .collect();
    let texts: Vec<&str> = pairs.iter().flat_map(|(_, t, o)| [*t, *o]).collect();
    progress.begin("embedding translation pairs", 0);
    let embs = cache.embed_all(encoder, &texts, 32, &|d, t| progress.update(d, t))?;
    progress.end();
    let refs: Vec<(&str, &[f32], &[f32])> = pairs
        .iter()
        .zip(embs.chunks_exact(2))
        .map(|((lang, _, _), e)| (lang.as_str(), e[0].as_slice(), e[1].as_slice()))
        .collect();
    let found = LanguageDirections::from_pairs(&refs, MIN_PAIRS_PER_LANGUAGE);
    let (directions, info) = found.ok_or_else(|| {
        ClassifierError::NoTrainingData(format!(
            "{}: {} translation pairs (records with `translated_from` naming a training \
             record's id, and `lang`), fewer than {MIN_PAIRS_PER_LANGUAGE} in every language \
             (`train heads --no-language-pairs` trains without)",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            pairs.len()
        ))
    })?;
    progress.note(&format!(
        "language directions: rank {} from {} pairs ({:?})",
        info.rank,
        refs.len(),
        info.pairs_by_language
    ));
    Ok((directions, info))
}
