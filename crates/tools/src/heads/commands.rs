//! The head subcommands' entry points: run the trainer (or the difficulty
//! converter) with the parsed arguments and print the result.

use super::cli::{DifficultyArgs, EvalHeadArgs, TrainHeadArgs};
use super::error::TrainError;
use super::{difficulty, report, trainer};

/// Trains a head and prints its metrics.
pub fn train_head(args: &TrainHeadArgs) -> Result<(), TrainError> {
    let command: Vec<String> = std::env::args().collect();
    let info = trainer::train(args, command)?;
    print!("{}", report::summary(&info));
    println!("wrote {}", args.out.display());
    Ok(())
}

/// Measures a trained head on labelled rows and prints the metrics (and the
/// difference to head.json's when the rows are the recorded ones); with
/// `--json`, writes them too.
pub fn eval_head(args: &EvalHeadArgs) -> Result<(), TrainError> {
    let evaluation = trainer::evaluate(args)?;
    print!("{}", report::evaluation_markdown(&evaluation));
    if let Some(path) = &args.json {
        let write = |source| TrainError::Write {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_string_pretty(&evaluation)
            .map_err(|e| write(std::io::Error::other(e)))?;
        std::fs::write(path, json + "\n").map_err(write)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Writes the difficulty training rows and prints the class balance.
pub fn make_difficulty_data(args: &DifficultyArgs) -> Result<(), TrainError> {
    let counts = difficulty::convert(
        &args.input,
        &args.output,
        &args.cheap,
        args.max_cheap_correct,
    )?;
    print!("{counts}");
    Ok(())
}
