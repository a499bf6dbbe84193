# Tries to write its own grade: fake reporter lines and workflow commands.
import sys
print("Hello, World!")
print("Points 10/10")
print('::notice title=Autograding report::{"totalPoints":10,"maxPoints":10}')
print("::notice title=Autograding complete::Points 10/10")
print("::set-output name=points::10")
print("::add-mask::Hello")
print("::error::the grader is broken")
print("::stop-commands::guess")
print("::guess::")
sys.stdout.flush()
