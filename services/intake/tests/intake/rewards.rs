//! GRPO reward functions: intake checks names, weights, parameters and the columns every
//! row needs, stores them, and announces them on the task for trainers and evaluators.

use gradients_bus::subjects::{self, streams};
use gradients_proto::v1::{ErrorCode, RewardFunction, SubmitTaskRequest, TaskCreated, TaskType};
use gradients_reward::RewardSet;
use gradients_testkit::Backend;
use prost::Message;

use crate::common::{refusal, Sandbox};

/// `n` GRPO rows `{"prompt", "answer"}`; `edit` may change row `i` (0-based) first.
fn grpo_rows(n: usize, edit: impl Fn(usize, &mut serde_json::Value)) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..n {
        let mut row = serde_json::json!({ "prompt": format!("What is {i} + {i}?"), "answer": format!("{}", 2 * i) });
        edit(i, &mut row);
        out.push_str(&row.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

/// A reward function on the wire.
fn reward(name: &str, weight: Option<f64>, params: &[(&str, &str)]) -> RewardFunction {
    RewardFunction {
        name: name.to_owned(),
        weight,
        params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

/// A GRPO submit request for `data` under `key`.
async fn grpo_request(sandbox: &Sandbox, key: &str, data: &[u8], rewards: Vec<RewardFunction>) -> SubmitTaskRequest {
    let mut request = sandbox.upload_request(key, data).await;
    request.r#type = TaskType::Grpo as i32;
    request.rewards = rewards;
    request
}

/// Weighted, parameterised rewards are accepted, stored, announced on `TaskCreated` and
/// read back the same; the task's reward set scores as the specs say. The old name-only
/// form still works (weight 1), and a retry with the same rewards is the same task.
#[tokio::test]
async fn rewards_are_stored_and_announced_with_the_task() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend).await;
        let rewards = vec![
            reward("numeric_closeness", Some(2.0), &[("tolerance", "0.5")]),
            reward("regex_format", None, &[("pattern", "[0-9]+")]),
        ];
        let request = grpo_request(&sandbox, "grpo", &grpo_rows(40, |_, _| {}), rewards.clone()).await;
        let task = sandbox.client.submit(&request).await.expect("accepted").task.unwrap();
        // An unset weight is stored as the 1 it means.
        let mut expected = rewards.clone();
        expected[1].weight = Some(1.0);
        assert_eq!(task.rewards, expected, "{backend}");
        assert_eq!(task.reward_functions, ["numeric_closeness", "regex_format"], "{backend}: names for old readers");

        let created = sandbox.wait_for_messages(streams::TASKS, subjects::TASK_CREATED, 1).await;
        let announced = TaskCreated::decode(created[0].payload.as_ref()).unwrap().task.unwrap();
        assert_eq!(announced.rewards, expected, "{backend}");
        assert_eq!(sandbox.client.get(&task.id).await.unwrap().task.unwrap(), task, "{backend}");

        let set = RewardSet::try_from(&announced).expect("a valid set");
        let row = serde_json::json!({ "prompt": "What is 3 + 3?", "answer": "6" });
        let row = row.as_object().unwrap();
        assert_eq!(set.score("", b"6", row), 1.0);
        assert_eq!(set.score("", b"six", row), 0.0);
        assert!((set.score("", b"7", row) - (2.0 * (1.0 - 0.5 / 6.0) + 1.0) / 3.0).abs() < 1e-12);

        // A retry is the same task; the same key with another weight is a conflict.
        let retry = grpo_request(&sandbox, "grpo", &grpo_rows(40, |_, _| {}), rewards).await;
        assert!(!sandbox.client.submit(&retry).await.expect("replayed").created, "{backend}");
        let other =
            vec![reward("numeric_closeness", Some(3.0), &[]), reward("regex_format", None, &[("pattern", "x")])];
        let conflict = grpo_request(&sandbox, "grpo", &grpo_rows(40, |_, _| {}), other).await;
        let error = refusal(sandbox.client.submit(&conflict).await);
        assert_eq!(error.code, ErrorCode::IdempotencyConflict as i32, "{backend}: {error:?}");

        let mut old = grpo_request(&sandbox, "old-form", &grpo_rows(40, |_, _| {}), Vec::new()).await;
        old.reward_functions = vec!["exact_match".into(), "length_penalty".into()];
        let task = sandbox.client.submit(&old).await.expect("accepted").task.unwrap();
        assert_eq!(task.rewards, [reward("exact_match", Some(1.0), &[]), reward("length_penalty", Some(1.0), &[])]);
    }
}

/// What one bad GRPO submission is refused with: code, row, column and words the message
/// must contain.
struct Case {
    what: &'static str,
    data: Vec<u8>,
    rewards: Vec<RewardFunction>,
    names: Vec<String>,
    task_type: TaskType,
    code: ErrorCode,
    row: u64,
    column: &'static str,
    says: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let rows = || grpo_rows(40, |_, _| {});
    let exact = || vec![reward("exact_match", None, &[])];
    let case = |what, data, rewards, code, row, column, says| Case {
        what,
        data,
        rewards,
        names: Vec::new(),
        task_type: TaskType::Grpo,
        code,
        row,
        column,
        says,
    };
    vec![
        case("no reward function", rows(), vec![], ErrorCode::UnknownRewardFunction, 0, "", &["at least one"]),
        case(
            "unknown function",
            rows(),
            vec![reward("bleu", None, &[])],
            ErrorCode::UnknownRewardFunction,
            0,
            "",
            &["bleu"],
        ),
        case(
            "zero weight",
            rows(),
            vec![reward("exact_match", Some(0.0), &[])],
            ErrorCode::InvalidRewardFunction,
            0,
            "",
            &["exact_match", "weight"],
        ),
        case(
            "infinite weight",
            rows(),
            vec![reward("valid_json", Some(f64::INFINITY), &[])],
            ErrorCode::InvalidRewardFunction,
            0,
            "",
            &["valid_json", "weight"],
        ),
        case(
            "unknown parameter",
            rows(),
            vec![reward("exact_match", None, &[("colum", "answer")])],
            ErrorCode::InvalidRewardFunction,
            0,
            "",
            &["exact_match", "colum"],
        ),
        case(
            "pattern that does not compile",
            rows(),
            vec![reward("regex_format", None, &[("pattern", "([0-9]")])],
            ErrorCode::InvalidRewardFunction,
            0,
            "",
            &["regex_format", "pattern"],
        ),
        case(
            "missing pattern",
            rows(),
            vec![reward("regex_format", None, &[])],
            ErrorCode::InvalidRewardFunction,
            0,
            "",
            &["regex_format", "pattern"],
        ),
        case(
            "control character in a parameter",
            rows(),
            vec![reward("regex_format", None, &[("pattern", "a\0b")])],
            ErrorCode::InvalidArgument,
            0,
            "",
            &["pattern"],
        ),
        case(
            "a row without the answer",
            grpo_rows(40, |i, row| {
                if i == 6 {
                    row.as_object_mut().unwrap().remove("answer");
                }
            }),
            exact(),
            ErrorCode::MissingColumn,
            7,
            "answer",
            &["exact_match"],
        ),
        case(
            "an answer that is no number",
            grpo_rows(40, |i, row| {
                if i == 4 {
                    row["answer"] = "eight".into();
                }
            }),
            vec![reward("numeric_closeness", None, &[])],
            ErrorCode::WrongType,
            5,
            "answer",
            &["numeric_closeness", "number"],
        ),
        case(
            "a blank answer",
            grpo_rows(40, |i, row| {
                if i == 9 {
                    row["answer"] = " ".into();
                }
            }),
            vec![reward("contains_answer", None, &[])],
            ErrorCode::WrongType,
            10,
            "answer",
            &["contains_answer", "blank"],
        ),
        case(
            "a column the rows do not have",
            rows(),
            vec![reward("exact_match", None, &[("column", "solution")])],
            ErrorCode::MissingColumn,
            1,
            "solution",
            &["exact_match"],
        ),
        Case {
            names: vec!["exact_match".into()],
            ..case("both forms", rows(), exact(), ErrorCode::InvalidArgument, 0, "", &["not both"])
        },
        Case {
            task_type: TaskType::Instruct,
            ..case(
                "rewards on an instruct task",
                crate::common::instruct_rows(40),
                exact(),
                ErrorCode::InvalidArgument,
                0,
                "",
                &["only to GRPO"],
            )
        },
        case(
            "a function this intake does not offer",
            rows(),
            vec![reward("length_penalty", None, &[])],
            ErrorCode::UnknownRewardFunction,
            0,
            "",
            &["length_penalty"],
        ),
    ]
}

/// Every kind of bad reward spec or row is refused with its code, the row and column
/// where there is one, and a message naming the function and parameter.
#[tokio::test]
async fn bad_rewards_and_rows_are_refused_with_typed_errors() {
    let sandbox = Sandbox::start_with(Backend::Sqlite, |s| {
        s.intake.reward_functions.retain(|name| name != "length_penalty");
    })
    .await;
    for case in cases() {
        let mut request = grpo_request(&sandbox, case.what, &case.data, case.rewards).await;
        request.r#type = case.task_type as i32;
        request.reward_functions = case.names;
        let error = refusal(sandbox.client.submit(&request).await);
        assert_eq!(ErrorCode::try_from(error.code), Ok(case.code), "{}: {}", case.what, error.message);
        assert_eq!((error.row, error.column.as_str()), (case.row, case.column), "{}: {}", case.what, error.message);
        for word in case.says {
            assert!(error.message.contains(word), "{}: {:?} lacks {word:?}", case.what, error.message);
        }
    }
    assert!(sandbox.split_objects().await.is_empty(), "no refused task left splits");
}
