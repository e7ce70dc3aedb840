//! `gradients data ...`: generated task folders and pretraining text (gradients-taskgen)
//! for tests, the demo and the market benchmark. Works offline; touches no service.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use gradients_taskgen::{Family, TaskKind};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Subcommand)]
pub enum DataCommand {
    /// List the task families: name, whether the corpus half-teaches it, what it asks.
    Families,
    /// Write a task folder (task.toml + data.jsonl) of generated rows per family.
    Generate(GenerateArgs),
    /// Write a pretraining corpus of simple text for the tiny base models.
    Corpus {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// Its exact size in bytes.
        #[arg(long, default_value_t = 2_000_000)]
        bytes: usize,
        /// The same seed gives the same text.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

#[derive(Args)]
pub struct GenerateArgs {
    /// The folder to write the task folders into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// A family to generate; repeatable or comma-separated (default: all).
    #[arg(long = "family", value_name = "NAME", value_delimiter = ',')]
    families: Vec<String>,
    /// Rows per family.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    rows: u32,
    /// The same seed gives the same rows.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// DPO rows (prompt, chosen, rejected) instead of instruct rows; folders get `-dpo`.
    #[arg(long)]
    dpo: bool,
    /// GRPO rows (prompt, answer) scored by each family's reward functions, named in
    /// task.toml's `[[rewards]]`; folders get `-grpo`.
    #[arg(long, conflicts_with = "dpo")]
    grpo: bool,
    /// The base model to name in each task.toml (default: none, so submit picks its own).
    #[arg(long)]
    base_model: Option<String>,
}

pub fn run(command: DataCommand) -> anyhow::Result<ExitCode> {
    match command {
        DataCommand::Families => print!("{}", families_table()),
        DataCommand::Generate(args) => generate(&args)?,
        DataCommand::Corpus { out, bytes, seed } => {
            std::fs::write(&out, gradients_taskgen::corpus(seed, bytes))
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}  {bytes} bytes", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn families_table() -> String {
    let families = gradients_taskgen::families();
    let width = families.iter().map(|f| f.name.len()).max().unwrap_or(0).max("NAME".len());
    let mut out = format!("{:<width$}  {:<10}  DESCRIPTION\n", "NAME", "KNOWLEDGE");
    for f in families {
        out.push_str(&format!("{:<width$}  {:<10}  {}\n", f.name, f.knowledge.as_str(), f.description));
    }
    out
}

fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let rows = args.rows as usize;
    let families = chosen_families(&args.families)?;
    // Checked before writing anything, so a bad request leaves no half-written output.
    for f in &families {
        if let Some(max) = f.max_rows().filter(|&max| rows > max) {
            anyhow::bail!("family {} has only {max} distinct rows; ask for --rows {max} or fewer", f.name);
        }
    }
    let kind = match (args.dpo, args.grpo) {
        (true, _) => TaskKind::Dpo,
        (_, true) => TaskKind::Grpo,
        _ => TaskKind::Instruct,
    };
    let bar = if families.len() > 1 { progress(families.len()) } else { ProgressBar::hidden() };
    for f in families {
        bar.set_message(f.name);
        let folder =
            gradients_taskgen::write_task_dir(&args.out, f, kind, rows, args.seed, args.base_model.as_deref())?;
        // Suspended so the line is not drawn over by the bar (which is on stderr).
        bar.suspend(|| println!("{}  {rows} rows", folder.display()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The named families in the order given, without repeats; all of them when none is named.
fn chosen_families(names: &[String]) -> anyhow::Result<Vec<&'static Family>> {
    if names.is_empty() {
        return Ok(gradients_taskgen::families().iter().collect());
    }
    let mut chosen: Vec<&'static Family> = Vec::new();
    for name in names {
        let f = gradients_taskgen::family(name.trim())?;
        if !chosen.iter().any(|c| c.name == f.name) {
            chosen.push(f);
        }
    }
    Ok(chosen)
}

fn progress(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task_dir;

    /// Generated folders read back through the same reader `task submit --dir` uses.
    #[test]
    fn generated_folders_are_task_folders() {
        let dir = tempfile::tempdir().unwrap();
        for kind in [TaskKind::Instruct, TaskKind::Dpo, TaskKind::Grpo] {
            for f in gradients_taskgen::families() {
                let folder = gradients_taskgen::write_task_dir(dir.path(), f, kind, 30, 1, Some("tiny-1m")).unwrap();
                let read = task_dir::read(&folder).unwrap();
                assert_eq!(read.task.task_type, kind.as_str());
                assert_eq!(read.task.base_model.as_deref(), Some("tiny-1m"));
                assert!(read.task.columns.is_empty());
                assert_eq!(std::fs::read_to_string(&read.data).unwrap().lines().count(), 30);
                if kind == TaskKind::Grpo {
                    assert_eq!(read.task.rewards, f.grpo_rewards(), "{}", f.name);
                    read.rows().unwrap_or_else(|e| panic!("{}: {e}", f.name));
                }
            }
        }
    }

    #[test]
    fn families_are_chosen_once_in_order_and_unknown_ones_named() {
        let names = ["parity", "arithmetic", "parity"].map(String::from);
        let chosen: Vec<_> = chosen_families(&names).unwrap().iter().map(|f| f.name).collect();
        assert_eq!(chosen, ["parity", "arithmetic"]);
        assert_eq!(chosen_families(&[]).unwrap().len(), gradients_taskgen::families().len());
        let error = chosen_families(&["nope".into()]).unwrap_err().to_string();
        assert!(error.contains("nope") && error.contains("arithmetic"), "{error}");
        assert!(families_table().lines().any(|l| l.starts_with("capital-lookup") && l.contains(" new ")));
    }
}
