// Placeholder translation unit until cache/ has sources; remove when it does.
