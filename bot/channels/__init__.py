"""Channel adapters: convert a platform's request into an IncomingMessage and post Replies back."""
