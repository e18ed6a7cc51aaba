"""The Allure report: what a run writes beside its results, and the HTML rendering."""
