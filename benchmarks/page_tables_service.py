"""The tables of BENCHMARKS.md about the deployed service (issue 29): the replay with planted
shifts through ``isic serve`` and what ``isic monitor`` flags (quality: ``page_tables.py``; run
time and size: ``page_tables_scale.py``)."""

from __future__ import annotations

from table_spec import Table

REPLAY = "python benchmarks/bench_replay.py"
SHIFTS = [("centre", "a new centre (`attribution`) on ~20 % of a window's lesions"),
          ("age", "ages +5 years"), ("colour", "a colour cast on 30 % of the crops"),
          ("prevalence", "prevalence doubled")]

TABLES: dict[str, Table] = {
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
