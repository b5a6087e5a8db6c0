//! The DBOS Python CLI (`dbos==3.4.0`) reads workflows this library wrote: inputs, outputs,
//! step outputs and errors all decode, with no warnings.

use dbos_core::{step, workflow, Error, ErrorKind};
use dbos_testkit::python::dbos_cli;
use dbos_testkit::TestDatabase;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Parcel {
    weight_grams: u32,
    tags: Vec<String>,
}

#[step]
async fn weigh(parcel: Parcel) -> Result<u32, Error> {
    Ok(parcel.weight_grams)
}

#[step]
async fn refuse(reason: String) -> Result<(), Error> {
    Err(Error::new(ErrorKind::WorkflowFailed, reason))
}

#[workflow]
async fn ship(parcel: Parcel, express: bool) -> Result<Parcel, Error> {
    let w = weigh(parcel.clone()).await?;
    if express {
        let _ = refuse("express is sold out".into()).await;
    }
    Ok(Parcel {
        weight_grams: w + 10,
        tags: vec!["shipped".into()],
    })
}

#[workflow]
async fn always_fails(code: i32) -> Result<(), Error> {
    Err(Error::new(
        ErrorKind::WorkflowFailed,
        format!("failure {code}"),
    ))
}

async fn cli_json(args: &[&str]) -> Value {
    let out = dbos_cli(args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dbos {args:?} failed: {stderr}");
    let lowered = stderr.to_lowercase();
    assert!(
        !lowered.contains("warning")
            && !lowered.contains("not available")
            && !lowered.contains("error"),
        "dbos {args:?} printed: {stderr}"
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "dbos {args:?} printed non-JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[dbos_testkit::test]
async fn the_dbos_python_cli_decodes_our_workflows(db: TestDatabase) {
    let dbos = db.launch().await;
    let parcel = Parcel {
        weight_grams: 500,
        tags: vec!["fragile".into()],
    };
    ship(parcel.clone(), true)
        .id("ship-1")
        .on(&dbos)
        .await
        .unwrap();
    always_fails(7).id("fail-1").on(&dbos).await.unwrap_err();
    let url = db.url();

    let got = cli_json(&["workflow", "get", "ship-1", "-s", &url]).await;
    assert_eq!(got["status"], "SUCCESS");
    assert_eq!(got["name"], "ship");
    assert_eq!(
        got["input"],
        json!({"args": [{"weight_grams": 500, "tags": ["fragile"]}, true], "kwargs": {}}),
        "{got}"
    );
    assert_eq!(
        got["output"],
        json!({"weight_grams": 510, "tags": ["shipped"]}),
        "{got}"
    );

    let steps = cli_json(&["workflow", "steps", "ship-1", "-s", &url]).await;
    let steps = steps.as_array().unwrap();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[0]["function_name"], "weigh");
    assert_eq!(steps[0]["output"], json!(500));
    assert_eq!(steps[1]["function_name"], "refuse");
    let step_error = steps[1]["error"].to_string();
    assert!(step_error.contains("express is sold out"), "{step_error}");

    let failed = cli_json(&["workflow", "get", "fail-1", "-s", &url]).await;
    assert_eq!(failed["status"], "ERROR");
    assert!(
        failed["error"].to_string().contains("failure 7"),
        "{failed}"
    );

    let listed = cli_json(&["workflow", "list", "-s", &url]).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["workflow_id"].as_str())
        .collect();
    assert!(
        ids.contains(&"ship-1") && ids.contains(&"fail-1"),
        "{listed}"
    );
}
