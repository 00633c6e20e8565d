"""Run reports: the self-contained HTML report (html), the regression index (index), `sanlab report` (cli)."""
