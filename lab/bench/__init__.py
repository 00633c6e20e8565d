"""`sanlab bench`: the project's target against tgtd over loopback, alternating A/B rounds (issue 7).

workloads (what one measurement runs, scenario files), tools (load generators: commands and parsers), targets
(both targets as local processes on one pre-filled LUN file), procstat (target CPU and RSS from /proc), stats
(samples -> figures, goals, flat metrics), report (bench.md, bench.png, console table), runner (the rounds),
scale (many LUNs and sessions: login rate, memory), login (an independent minimal iSCSI login), cli.
"""
