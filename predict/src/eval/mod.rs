//! Evaluation protocols, one per public dataset. Each scores methods on data
//! they were not trained on and returns a report that prints as text.

pub mod backblaze;
pub mod demand;
pub mod nab;
pub mod nab_score;
pub mod skab;
