"""``saew verify``: causal checks of data-free links (issue 19 item 3, contract section 6)."""
