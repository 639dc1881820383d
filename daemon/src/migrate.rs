//! Brings a store written by an older build to this build's layout before
//! the engine starts: each step checks a mark in the store and does its
//! work once (moving data to a new table, building a secondary index), in
//! bounded transactions, so that a large store is migrated without a
//! transaction the size of the database. `guanxi serve` runs them at start;
//! `guanxi reindex` rebuilds the indexes whatever their marks say.

use crate::engine::EngineError;
use guanxi_adapters::store::Store;

/// Runs every step that this store still needs; answers what was done, in
/// words for the log (empty for a current store).
pub fn run(store: &Store) -> Result<Vec<String>, EngineError> {
    let mut done = Vec::new();
    let moved = crate::serials::migrate(store)?;
    if moved > 0 {
        done.push(format!(
            "moved {moved} serial registration(s) to one entry each"
        ));
    }
    let indexed = crate::record_index::ensure_built(store)?;
    if indexed > 0 {
        done.push(format!(
            "indexed {indexed} record(s) by family, status, date and serial"
        ));
    }
    let indexed = crate::leads::index::ensure_built(store)?;
    if indexed > 0 {
        done.push(format!("indexed {indexed} lead(s) by stage"));
    }
    let indexed = crate::accounts::ensure_indexed(store)?;
    if indexed > 0 {
        done.push(format!("indexed {indexed} account(s) by partner"));
    }
    let counted = crate::journey::ensure_built(store)?;
    if counted > 0 {
        done.push(format!(
            "counted {counted} partner(s) at their journey stages"
        ));
    }
    Ok(done)
}

/// Rebuilds every secondary index from the records (`guanxi reindex`).
pub fn reindex(store: &Store) -> Result<Vec<String>, EngineError> {
    let mut done = Vec::new();
    let moved = crate::serials::migrate(store)?;
    if moved > 0 {
        done.push(format!(
            "{moved} serial registration(s) moved to one entry each"
        ));
    }
    let n = crate::record_index::rebuild(store)?;
    done.push(format!(
        "{n} record(s) indexed by family, status, date and serial"
    ));
    let n = crate::leads::index::rebuild(store)?;
    done.push(format!("{n} lead(s) indexed by stage"));
    let n = crate::accounts::reindex(store)?;
    done.push(format!("{n} account(s) indexed by partner"));
    Ok(done)
}
