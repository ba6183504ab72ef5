@echo off
rem ===========================================================================
rem Proves that the scheduled task ACME-Migration works before anything
rem depends on it: the job runs as ACME\Administrator and can read old-sbs's
rem administrative share, which a plain WinRM session cannot (see job.cmd).
rem Run by the runner with no argument: hands itself to the task and waits.
rem ===========================================================================
if /i "%~1"=="in-task" goto work
call C:\mig\bin\job.cmd test-job-task "%~f0" in-task
exit /b %errorlevel%

:work
echo Job runs as %USERDOMAIN%\%USERNAME% on %COMPUTERNAME%
if /i not "%USERDOMAIN%\%USERNAME%"=="ACME\Administrator" (
    echo Expected ACME\Administrator: recreate the task, see the step create-job-task. 1>&2
    exit /b 1
)
dir \\old-sbs\D$\Data
if errorlevel 1 (
    echo Cannot read \\old-sbs\D$\Data with the task's credentials. 1>&2
    exit /b 1
)
exit /b 0
