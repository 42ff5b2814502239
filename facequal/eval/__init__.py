"""Quality evaluated on verification pairs: the metrics (``metrics``: ERC, EDC, bootstrap), pair
lists and path matching (``pairs``), `facequal eval` (``evaluate``), `facequal calibrate`
(``calibrate``) and the ERC / EDC figure (``plot``)."""
