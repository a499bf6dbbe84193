# Waits for a message the interactor never sends (the interactor waits for a question):
# both sides block; the solution's wall time runs out first.
input()
