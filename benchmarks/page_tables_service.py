"""The tables of BENCHMARKS.md about the deployed service (issue 29): the replay with planted
shifts through ``isic serve`` and what ``isic monitor`` flags; the API under load, its faults
and a slow client (``bench_serve.py``) (quality: ``page_tables.py``; run
time and size: ``page_tables_scale.py``)."""

from __future__ import annotations

from table_spec import Table

REPLAY = "python benchmarks/bench_replay.py"
SHIFTS = [("centre", "a new centre (`attribution`) on ~20 % of a window's lesions"),
          ("age", "ages +5 years"), ("colour", "a colour cast on 30 % of the crops"),
          ("prevalence", "prevalence doubled")]

SOLO = "python benchmarks/bench_solo.py"
_AT = "{{at_threshold.{k}.sensitivity:.3f}}", "{{at_threshold.{k}.review_rate:.1%}}"

TABLES: dict[str, Table] = {
    "solo": Table(
        "solo.json", SOLO,
        ["model ({rows:int} held-out lesions of {patients:int} patients, {positives:int} "
         "positives; threshold at OOF sensitivity 0.8)", "test pAUC", "test sensitivity",
         "review rate"],
        [["`{full}` inside its patient", "{test_pauc.solo_vs_full_inside.a:.4f}",
          *(c.format(k="full_inside") for c in _AT)],
         ["`{full}` scored alone", "{test_pauc.solo_vs_full_alone.a:.4f}",
          *(f"**{c.format(k='full_alone')}**" for c in _AT)],
         ["`{solo}` (alone = inside: no patient feature)", "{test_pauc.solo_vs_full_alone.b:.4f}",
          *(c.format(k="solo") for c in _AT)]]),
    "replay": Table(
        "replay.json", REPLAY,
        ["planted shift ({lesions:int} lesions, windows of {window:int}, {profile} profile, "
         "through `isic serve`)", "monitor defaults: first alert naming the input (goal: "
         "within 2)", "any alert", "`{variants.strict.monitor_args}`: naming / any"],
        [*[[label, f"{{shifts.{key}.named_text}}", f"{{shifts.{key}.any_text}}",
            f"{{variants.strict.{key}.named_text}} / {{variants.strict.{key}.any_text}}"]
           for key, label in SHIFTS],
         ["false alarms: clean windows before the shifts / all clean windows (goal: at most "
          "1 in 20)", "{false_alarms} of {clean_windows}", "{false_alarms_all_clean}",
          "{variants.strict.false_alarms} / {variants.strict.false_alarms_all_clean}"]]),
}

SERVE = "python benchmarks/bench_serve.py"

SERVE_TABLES: dict[str, Table] = {
    "serve-load": Table(
        "serve.json", SERVE,
        ["clients x lesions per request (server and load one core each; "
         "{conditions.cpu_model}, *loaded*)", "requests", "p50 / p95 / p99 ms", "lesions/s",
         "errors", "route"],
        [["{@.clients} x {@.lesions}", "{@.answered}", "{@.p50_ms:,.0f} / {@.p95_ms:,.0f} / "
          "{@.p99_ms:,.0f}", "{@.lesions_per_s:.1f}", "{@.errors}", "{@.routes}"]],
        each="load"),
    "serve-reliability": Table(
        "serve.json", SERVE,
        ["scoring API, smoke chain (`{bundle_version}`)", "figure", "goal"],
        [["`isic predict` on the same {batch_path.rows} rows, one core (scoring seconds)",
          "{batch_path.lesions_per_s:.1f} lesions/s", ""],
         ["service at 8 clients / batch path: 50-lesion requests",
          "**{ratio_8_clients.l50:.2f}**", ">= {goal_ratio}"],
         ["the same, 1-lesion requests (scored by the solo GBDT, not the stack)",
          "**{ratio_8_clients.l1:.2f}**", ">= {goal_ratio}"],
         ["answered requests of the load, missing from the log / logged with a wrong count",
          "{log_check.missing} / {log_check.wrong_count} of {log_check.answered:int}", "0 / 0"],
         ["SIGKILL mid-load: acknowledged requests missing after restart / half-logged",
          "{faults.sigkill.missing} / {faults.sigkill.partial} of "
          "{faults.sigkill.acknowledged}", "0 / 0"],
         ["after the restart: `PRAGMA integrity_check`, answers again",
          "{faults.sigkill.integrity_check}, {faults.sigkill.answers_after_restart}",
          "ok, True"],
         ["read-only log location: exit status, message names the path",
          "{faults.read_only.exit}, {faults.read_only.names_path}", "non-zero, True"],
         ["full disk: exit status, message names the path",
          "{faults.full_disk.exit}, {faults.full_disk.names_path}", "non-zero, True"],
         ["8 clients' p95 beside a 1 byte/s client / without it",
          "{slow_client.with_slow_client.p95_ms:,.0f} / {slow_client.clean.p95_ms:,.0f} ms "
          "(**{slow_client.ratio_p95:.2f}x**)", "<= {slow_client.goal_ratio}x"]]),
}

TABLES.update(SERVE_TABLES)
