"""What is done with a score file: select faces (``select``, `facequal filter`), copy or link the
selected images into a folder (``materialize``), pool embeddings into quality-weighted templates
(``pool``, `facequal pool`), and the HTML contact sheet (``report``, `facequal report`)."""
