"""Tools an instructor uses to author and ship an assignment: master notebooks (`grade
assign`), the student bundle (`grade release`), Gradescope's autograder zip."""
