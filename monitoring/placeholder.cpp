// Placeholder translation unit until monitoring/ has sources; remove when it does.
