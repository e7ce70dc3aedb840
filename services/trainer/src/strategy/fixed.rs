//! `fixed`: the baseline recipe (AutoTrain's defaults), one epoch, no search.

use super::{run_to_end, trial_of, Context, Trial};
use crate::model::CausalLm;
use crate::train::{Hyperparameters, RunRecord, TrainError};

pub fn run(ctx: &Context<'_>) -> Result<(CausalLm, RunRecord, Vec<Trial>), TrainError> {
    let hyper = Hyperparameters::autotrain(ctx.max_len);
    // The recipe decides its length (one epoch); a budget can only cut it short.
    let planned = hyper.planned_steps(ctx.data.train.len()).min(ctx.budget.steps.unwrap_or(u64::MAX));
    ctx.bar.set_length(planned);
    let run = ctx.start(hyper, planned)?;
    let (model, record) = run_to_end(ctx, run, ctx.budget.deadline)?;
    let trials = vec![trial_of(&record)];
    Ok((model, record, trials))
}
