"""Tables, figures and the HTML report, built from the records on disk; published numbers beside them."""
