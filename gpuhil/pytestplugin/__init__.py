"""The pytest side of gpuhil: the lab plugin (options, pool, gating, fixtures) and the results
plugin (outcomes, evidence, watchdog, Allure)."""
